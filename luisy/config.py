"""Process-wide luisy settings (working dir, cloud flags), seeded from the environment.

luisy 1.4.7 kept its settings in a singleton named ``Config``; pipelines call
``Config().get_param('working_dir')`` and ``luisy.set_working_dir(...)``, so the same
interface is kept here.
"""

from __future__ import annotations

import os
from typing import Any

#: Parameter names and their defaults.
DEFAULT_PARAMS: dict[str, Any] = {
    "working_dir": None,
    "download": False,
    "upload": False,
    "dry_run": False,
    "no_ask": False,
    "hash_update_mode": False,
    "requirements_path": None,
    "remote": None,
}

#: Parameters that fall back to an environment variable when not set explicitly.
ENV_KEYS: dict[str, str] = {
    "working_dir": "WORKING_DIR",
    "requirements_path": "LUISY_REQUIREMENTS_PATH",
}


class Config:
    """Singleton holding luisy's run settings; ``Config()`` always returns the same object."""

    _instance: "Config | None" = None

    def __new__(cls) -> "Config":
        if cls._instance is None:
            inst = super().__new__(cls)
            inst._params = {}
            inst.reset()
            cls._instance = inst
        return cls._instance

    def reset(self) -> None:
        """Forget explicit settings; go back to defaults and environment variables."""
        params = dict(DEFAULT_PARAMS)
        for name, env_key in ENV_KEYS.items():
            value = os.environ.get(env_key)
            if value:
                params[name] = value
        self._params = params

    def get_param(self, name: str) -> Any:
        """Value of setting ``name``; unknown names raise ``ValueError``."""
        if name not in self._params:
            raise ValueError(f"unknown luisy setting {name!r}")
        return self._params[name]

    def set_param(self, name: str, value: Any) -> None:
        """Set one setting."""
        self._params[name] = value

    def update(self, params: dict[str, Any]) -> None:
        """Set several settings at once."""
        for name, value in params.items():
            self.set_param(name, value)

    @property
    def config(self) -> dict[str, Any]:
        """A copy of all settings."""
        return dict(self._params)

    @property
    def working_dir(self) -> str:
        """The working dir, normalised; raises ``ValueError`` when it is not set."""
        value = self._params.get("working_dir")
        if not value:
            raise ValueError(
                "working dir not set: pass --working-dir, set WORKING_DIR or call "
                "luisy.set_working_dir()"
            )
        return os.path.normpath(os.path.abspath(os.fspath(value)))

    @property
    def download(self) -> bool:
        """Whether this run fetches outputs from the cloud (``--download``)."""
        return bool(self._params.get("download"))

    @property
    def upload(self) -> bool:
        """Whether this run pushes outputs to the cloud (``--upload``)."""
        return bool(self._params.get("upload"))


def set_working_dir(working_dir: str | os.PathLike[str]) -> None:
    """Use ``working_dir`` as the root of all project directories."""
    Config().set_param("working_dir", os.fspath(working_dir))


def activate_download() -> None:
    """Ask luisy to fetch missing outputs from the cloud when they are read."""
    Config().set_param("download", True)


def remove_working_dir(path: str) -> str:
    """``<working_dir>/proj/raw/f.pkl`` -> ``/proj/raw/f.pkl`` (the 1.4.7 hash-file key form)."""
    root = Config().working_dir
    full = os.path.normpath(os.path.abspath(path))
    rel = os.path.relpath(full, root)
    if rel == os.curdir or rel.startswith(os.pardir):
        raise ValueError(f"{path} is not inside the working dir {root}")
    return "/" + rel.replace(os.sep, "/")


def add_working_dir(key: str) -> str:
    """Inverse of :func:`remove_working_dir`."""
    return os.path.join(Config().working_dir, *key.strip("/").split("/"))
