"""Find executed instances of a task class from the output files in the working dir."""

from __future__ import annotations

import os
import re
from typing import Any


def _pattern_path(cls: type, tokens: dict[str, str]) -> str:
    """Output path of ``cls`` with every parameter replaced by a placeholder token."""
    probe = cls.__new__(cls)
    for name, token in tokens.items():
        object.__setattr__(probe, name, token)
    if not isinstance(getattr(cls, "project_name", None), str):
        probe.project_name = cls.__module__.split(".")[0]
    return probe.get_outfile()


def related_instances(cls: type, regex_placeholder: str = r"[\S]*") -> list[Any]:
    """Instances of ``cls`` whose outputs exist, parameters parsed from their paths.

    Works for tasks named by ``auto_filename`` (or names built from parameters in the
    same way). Parameters that are not part of the path keep their defaults.
    """
    names = list(cls.get_param_names())
    tokens = {n: f"LUISYPARAM{i}X" for i, n in enumerate(names)}
    pattern_path = _pattern_path(cls, tokens)
    first = min((pattern_path.find(t) for t in tokens.values() if t in pattern_path),
                default=-1)
    root = os.path.dirname(pattern_path if first < 0 else pattern_path[:first] + "x")
    regex, seen = "", set()
    pos = 0
    token_re = re.compile("|".join(re.escape(t) for t in tokens.values()))
    by_token = {t: n for n, t in tokens.items()}
    for m in token_re.finditer(pattern_path):
        regex += re.escape(pattern_path[pos:m.start()])
        name = by_token[m.group(0)]
        if name in seen:
            regex += f"(?P={name})"
        else:
            regex += f"(?P<{name}>{regex_placeholder}?)"
            seen.add(name)
        pos = m.end()
    regex += re.escape(pattern_path[pos:]) + r"\Z"
    compiled = re.compile(regex)
    found = []
    if not os.path.isdir(root):
        return found
    candidates = []
    for dirpath, dirnames, filenames in os.walk(root):
        candidates.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
    for path in sorted(candidates):
        m = compiled.match(path)
        if m:
            found.append(cls(**_parse_values(cls, m.groupdict())))
    return found


def _parse_values(cls: type, texts: dict[str, str]) -> dict[str, Any]:
    """Parameter values from their file-name text; text that does not parse is kept as is
    (file names are lossy for lists, e.g. ``A_B``)."""
    params = dict(cls.get_params())
    values: dict[str, Any] = {}
    for name, text in texts.items():
        try:
            values[name] = params[name].parse(text)
        except Exception:  # luigi parsers raise many types; fall back to the raw text
            values[name] = text
    return values
