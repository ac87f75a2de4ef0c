"""Process-wide luisy settings (working dir, cloud flags, Azure account), the 1.4.7 way.

luisy 1.4.7 kept its settings in a singleton named ``Config``; pipelines call
``Config().get_param('working_dir')`` and ``luisy.set_working_dir(...)``, so the same
interface is kept here. Precedence for every setting: a value set explicitly (CLI flag,
``set_param``/``update``, ``create_testing_config``) wins over its environment variable,
which wins over the default. Environment variables are read when a setting is read, so
a changed environment is seen without ``reset()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from luisy.errors import ConfigError
from luisy_sync.stores.url import identity_installed

#: Parameter names and their defaults (the 1.4.7 names, plus ``remote``).
DEFAULT_PARAMS: dict[str, Any] = {
    "download": False,
    "upload": False,
    "dry_run": False,
    "working_dir": None,
    "azure_storage_key": None,
    "azure_account_name": None,
    "azure_container_name": None,
    "no_ask": False,
    "requirements_path": None,
    "hash_update_mode": False,
    "spark": None,
    "remote": None,
}

#: Parameters that fall back to an environment variable when not set explicitly.
ENV_KEYS: dict[str, str] = {
    "working_dir": "WORKING_DIR",
    "requirements_path": "LUISY_REQUIREMENTS_PATH",
    "azure_storage_key": "LUISY_AZURE_STORAGE_KEY",
    "azure_account_name": "LUISY_AZURE_ACCOUNT_NAME",
    "azure_container_name": "LUISY_AZURE_CONTAINER_NAME",
}

#: The Azure settings: parameter -> (environment variable, CLI flag).
AZURE_SETTINGS: dict[str, tuple[str, str]] = {
    "azure_account_name": ("LUISY_AZURE_ACCOUNT_NAME", "--azure-account-name"),
    "azure_storage_key": ("LUISY_AZURE_STORAGE_KEY", "--azure-storage-key"),
    "azure_container_name": ("LUISY_AZURE_CONTAINER_NAME", "--azure-container-name"),
}

def get_default_params(raw: bool = True) -> dict[str, Any]:
    """The default settings; with ``raw=False`` only those whose default is not ``None``."""
    if raw:
        return dict(DEFAULT_PARAMS)
    return {k: v for k, v in DEFAULT_PARAMS.items() if v is not None}


class Config:
    """Singleton holding luisy's run settings; ``Config()`` always returns the same object."""

    _instance: "Config | None" = None
    _explicit: dict[str, Any]

    def __new__(cls) -> "Config":
        if cls._instance is None:
            inst = super().__new__(cls)
            inst._explicit = {}
            cls._instance = inst
        return cls._instance

    def reset(self) -> None:
        """Forget explicit settings; go back to defaults and environment variables."""
        self._explicit = {}

    def init(self) -> None:
        """Check that the settings add up (see :meth:`check_params`); kept from 1.4.7,
        where it connected to Azure and Spark eagerly (luisy connects on first use)."""
        self.check_params()

    def get_param(self, name: str) -> Any:
        """Value of setting ``name``; unknown names raise ``ValueError``."""
        if name in self._explicit:
            return self._explicit[name]
        env_key = ENV_KEYS.get(name)
        if env_key and os.environ.get(env_key):
            return os.environ[env_key]
        if name in DEFAULT_PARAMS:
            return DEFAULT_PARAMS[name]
        raise ConfigError(f"unknown luisy setting {name!r}; known: {', '.join(DEFAULT_PARAMS)}")

    def set_param(self, name: str, value: Any) -> None:
        """Set one setting (it then wins over its environment variable)."""
        self._explicit[name] = value

    def update(self, params: Mapping[str, Any]) -> None:
        """Set several settings at once."""
        for name, value in params.items():
            self.set_param(name, value)

    def unset_param(self, name: str) -> None:
        """Forget the explicit value of ``name`` (its variable or default applies again)."""
        self._explicit.pop(name, None)

    def is_set(self, name: str) -> bool:
        """Whether ``name`` was set explicitly (not from the environment or a default)."""
        return name in self._explicit

    def check_params(self) -> None:
        """Raise ``ValueError`` (one line) when the working dir is missing, or when cloud
        sync is on and the Azure settings are incomplete."""
        if not self.get_param("working_dir"):
            raise ConfigError("working dir not set: pass --working-dir, set WORKING_DIR or call "
                             "luisy.set_working_dir()")
        if self.download or self.upload:
            problem = azure_settings_problem(cloud_environment())
            if problem:
                raise ConfigError(problem)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of all settings as they resolve now."""
        names = list(DEFAULT_PARAMS) + [n for n in self._explicit if n not in DEFAULT_PARAMS]
        return {n: self.get_param(n) for n in names}

    @property
    def working_dir(self) -> str:
        """The working dir, normalised; raises ``ValueError`` when it is not set."""
        value = self.get_param("working_dir")
        if not value:
            raise ConfigError(
                "working dir not set: pass --working-dir, set WORKING_DIR or call "
                "luisy.set_working_dir()"
            )
        return os.path.normpath(os.path.abspath(os.fspath(value)))

    @property
    def download(self) -> bool:
        """Whether this run fetches outputs from the cloud (``--download``)."""
        return bool(self.get_param("download"))

    @property
    def upload(self) -> bool:
        """Whether this run pushes outputs to the cloud (``--upload``)."""
        return bool(self.get_param("upload"))

    @property
    def fs(self) -> Any:
        """luisy 1.4.7's Azure client is gone; this says what to use instead."""
        raise AttributeError("Config().fs (luisy 1.4.7's Azure client) is gone: use "
                             "task.upload()/task.download(), luisy.cloud.upload/download "
                             "or luisy_sync.push/pull")

    @property
    def spark(self) -> Any:
        """The Spark session for Spark targets (``--spark``, or a ``SparkMock`` in tests)."""
        return self.get_param("spark")


def cloud_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with the Azure settings of :class:`Config` applied:
    an explicitly set value replaces its variable, an explicit empty value removes it."""
    env = dict(os.environ if base is None else base)
    cfg = Config()
    for name, (var, _flag) in AZURE_SETTINGS.items():
        if cfg.is_set(name):
            value = cfg.get_param(name)
            if value:
                env[var] = str(value)
            else:
                env.pop(var, None)
    return env


def azure_settings_problem(env: Mapping[str, str]) -> str | None:
    """One line naming the missing Azure settings when some are given but they do not add
    up; ``None`` when they do, or when none is given (the embedded local remote)."""
    def given(var: str) -> bool:
        return bool(env.get(var, "").strip())

    if given("LUISY_REMOTE") or given("AZURE_STORAGE_CONNECTION_STRING") or \
            given("LUISY_AZURE_SAS_URL") or given("AZURE_STORAGE_SAS_URL"):
        return None
    present = [n for n, (var, _) in AZURE_SETTINGS.items() if given(var)]
    if not present and not given("LUISY_AZURE_ENDPOINT"):
        return None
    missing = []
    if "azure_account_name" not in present:
        missing.append("azure_account_name")
    if "azure_storage_key" not in present and not identity_installed():
        missing.append("azure_storage_key")
    if not missing:
        return None

    def name(param: str) -> str:
        var, flag = AZURE_SETTINGS[param]
        return f"{var} ({flag})"

    have = [name(p) for p in present] + (["LUISY_AZURE_ENDPOINT"] if given("LUISY_AZURE_ENDPOINT") else [])
    hint = (" (or `pip install 'luisy[identity]'` to sign in with DefaultAzureCredential)"
            if "azure_storage_key" in missing else "")
    return (f"incomplete Azure settings: {', '.join(have)} given but {' and '.join(map(name, missing))} "
            f"missing; set {'them' if len(missing) > 1 else 'it'}{hint}, or unset all Azure "
            "settings to use the embedded local remote")


def pass_args(args: Mapping[str, Any]) -> None:
    """Set several settings (1.4.7's name for ``Config().update``)."""
    Config().update(args)


def set_working_dir(working_dir: str | os.PathLike[str]) -> None:
    """Use ``working_dir`` as the root of all project directories."""
    Config().set_param("working_dir", os.fspath(working_dir))


def activate_download() -> None:
    """Ask luisy to fetch missing outputs from the cloud when they are read."""
    Config().set_param("download", True)


def change_working_dir(path: str, dir_current: str, dir_new: str) -> str:
    """``path`` below ``dir_current`` moved below ``dir_new`` (``''``: the bare
    ``/proj/...`` form); raises ``ValueError`` when ``path`` is not below ``dir_current``."""
    current = os.path.normpath(os.path.abspath(dir_current))
    full = os.path.normpath(os.path.abspath(path))
    rel = os.path.relpath(full, current)
    if rel == os.curdir or rel.startswith(os.pardir):
        raise ValueError(f"{path} is not inside {current}")
    rel = rel.replace(os.sep, "/")
    if not dir_new:
        return "/" + rel
    return os.path.join(os.path.normpath(dir_new), *rel.split("/"))


def remove_working_dir(path: str) -> str:
    """``<working_dir>/proj/raw/f.pkl`` -> ``/proj/raw/f.pkl`` (the 1.4.7 hash-file key form)."""
    root = Config().working_dir
    try:
        return change_working_dir(path, root, "")
    except ValueError:
        raise ValueError(f"{path} is not inside the working dir {root}") from None


def add_working_dir(key: str) -> str:
    """Inverse of :func:`remove_working_dir`."""
    return os.path.join(Config().working_dir, *key.strip("/").split("/"))
