"""Helpers from luisy 1.4.7: find executed task instances on disk, read a parquet directory.

    from luisy.helpers import get_related_instances
    get_related_instances(MyTask)        # [MyTask(a=1), MyTask(a=2)] for the outputs on disk
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

import luigi

DEFAULT_PLACEHOLDER = r"[\S]*"


class RegexTaskPattern:
    """The output path of ``task_cls`` with each parameter as a regex group.

    ``filename_pattern`` is the output path with placeholder tokens, ``regex_pattern``
    the regex matching real output paths, ``root_dir`` the directory searched (the
    deepest one that contains no parameter). Works for tasks named by ``auto_filename``
    or by file names that contain parameter values the same way.
    """

    def __init__(self, task_cls: type[luigi.Task], regex_placeholder: str = DEFAULT_PLACEHOLDER) -> None:
        self.task_cls = task_cls
        self.regex_placeholder = regex_placeholder
        self.param_names = list(task_cls.get_param_names())
        self.tokens = {n: f"LUISYPARAM{i}X" for i, n in enumerate(self.param_names)}
        self.filename_pattern = self._pattern_path()
        self.regex_pattern = self._build_regex()
        self.root_dir = self._root_dir()

    def _pattern_path(self) -> str:
        """Output path of the class with every parameter replaced by its token."""
        cls = self.task_cls
        probe: Any = cls.__new__(cls)
        for name, token in self.tokens.items():
            object.__setattr__(probe, name, token)
        if not isinstance(getattr(cls, "project_name", None), str):
            probe.project_name = cls.__module__.split(".")[0]
        return probe.get_outfile()

    def _root_dir(self) -> str:
        path = self.filename_pattern
        first = min((path.find(t) for t in self.tokens.values() if t in path), default=-1)
        return os.path.dirname(path if first < 0 else path[:first] + "x")

    def _build_regex(self) -> str:
        by_token = {t: n for n, t in self.tokens.items()}
        token_re = re.compile("|".join(re.escape(t) for t in by_token)) if by_token else None
        regex, seen, pos = "", set(), 0
        path = self.filename_pattern
        for m in token_re.finditer(path) if token_re else ():
            regex += re.escape(path[pos:m.start()])
            name = by_token[m.group(0)]
            if name in seen:
                regex += f"(?P={name})"
            else:
                regex += f"(?P<{name}>{self.regex_placeholder}?)"
                seen.add(name)
            pos = m.end()
        return regex + re.escape(path[pos:]) + r"\Z"

    def get_available_files(self) -> list[str]:
        """Sorted paths below ``root_dir`` that match ``regex_pattern``."""
        if not os.path.isdir(self.root_dir):
            return []
        compiled = re.compile(self.regex_pattern)
        candidates: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root_dir):
            candidates.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
        return [p for p in sorted(candidates) if compiled.match(p)]

    def get_available_params(self) -> dict[str, dict[str, str]]:
        """Matching path -> ``{parameter: text found in the path}``."""
        compiled = re.compile(self.regex_pattern)
        return {p: m.groupdict() for p in self.get_available_files() if (m := compiled.match(p))}

    def parse_values(self, texts: dict[str, str]) -> dict[str, Any]:
        """Parameter values from their file-name text; text that does not parse is kept
        as is (file names are lossy for lists, e.g. ``A_B``)."""
        params = dict(self.task_cls.get_params())
        values: dict[str, Any] = {}
        for name, text in texts.items():
            try:
                values[name] = params[name].parse(text)
            except Exception:  # luigi parsers raise many types; fall back to the raw text
                values[name] = text
        return values


def get_related_instances(task_cls: type, regex_placeholder: str = DEFAULT_PLACEHOLDER) -> list[Any]:
    """Instances of ``task_cls`` whose outputs exist in the working dir, parameters parsed
    from their paths (parameters not in the path keep their defaults).

    Raises ``ValueError`` naming ``get_file_name`` when a path cannot be turned back
    into parameters.
    """
    name = getattr(task_cls, "__name__", str(task_cls))
    try:
        pattern = RegexTaskPattern(task_cls, regex_placeholder)
        return [task_cls(**pattern.parse_values(texts))
                for texts in pattern.get_available_params().values()]
    except Exception as exc:  # anything from the user's get_file_name or parameters
        raise ValueError(
            f"cannot find executed instances of {name}: {type(exc).__name__}: {exc}; "
            f"check {name}.get_file_name() (the parameter values must appear in the file name, "
            "as @luisy.auto_filename writes them)"
        ) from exc


def get_df_from_parquet_dir(path: str) -> Any:
    """All ``*.parquet`` files in ``path`` as one DataFrame (empty files skipped);
    ``ValueError`` when there is no data."""
    import pandas as pd

    files = sorted(glob.glob(os.path.join(path, "*.parquet")))
    frames = [f for f in (pd.read_parquet(f) for f in files) if len(f) > 0]
    if not frames:
        raise ValueError(f"no parquet data in {path}")
    return pd.concat(frames).reset_index(drop=True)
