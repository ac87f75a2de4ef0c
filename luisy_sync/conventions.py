"""The conventions luisy and luisy_sync share, each defined once: the temp-name scheme,
the reserved bookkeeping names, how a relative path becomes a store object name, and how
byte counts are printed.

Temp names: ``.<name>.luisy-tmp-p<pid>-<host>-<32 hex>[<ext>]`` (luisy_sync downloads,
LocalStore writes, luisy outputs and download staging). A name is only treated as a temp
file when it matches that pattern exactly, so a user's file that merely contains
``.luisy-tmp-`` is ordinary data. The pid and a hash of the host name say which process
writes it: a cleanup removes a temp file only when that process is gone (on this host),
so two pulls into one directory never delete each other's files in flight. Names from
before the pid was added (no ``p<pid>-<host>-``) are still recognised.
"""

from __future__ import annotations

import functools
import os
import re
import socket

import xxhash

STORE_DIR = ".luisy-store"
"""The bookkeeping directory at the root of a LocalStore (index, staged blocks); never data."""

MANIFEST_NAME = ".luisy-sync.json"
"""The object in which a push records what it stored (below the store prefix)."""

TEMP_MARKER = ".luisy-tmp-"
"""The part every temp name contains (matching it alone does not make a temp name)."""

TEMP_NAME = re.compile(r"^\.(?P<base>.+)\.luisy-tmp-(?:p(?P<pid>\d{1,10})-(?P<host>[0-9a-f]{8})-)?"
                       r"(?P<uid>[0-9a-f]{32})(?P<ext>\.[A-Za-z0-9]{1,16})?$")
"""A temp file name (the base name, not a path)."""

_MAX_BASE_BYTES = 160  # the name stays below NAME_MAX (255) with the suffix added
_EXT = re.compile(r"\.[A-Za-z0-9]{1,16}")


@functools.lru_cache(maxsize=1)
def host_id() -> str:
    """8 hex digits naming this host in temp names."""
    return xxhash.xxh32_hexdigest(socket.gethostname().encode("utf-8"))


def temp_name(base: str, *, keep_ext: bool = False) -> str:
    """A fresh hidden temp name for the file ``base`` (a name, not a path). ``keep_ext``:
    end it with ``base``'s extension, for writers that pick a format by extension."""
    ext = os.path.splitext(base)[1] if keep_ext else ""
    if ext and not _EXT.fullmatch(ext):
        ext = ""
    encoded = base.encode("utf-8")
    if len(encoded) > _MAX_BASE_BYTES:
        short = encoded[:_MAX_BASE_BYTES].decode("utf-8", "ignore")
    else:
        short = base or "_"
    return f".{short}{TEMP_MARKER}p{os.getpid()}-{host_id()}-{os.urandom(16).hex()}{ext}"


def temp_path(final: str, *, keep_ext: bool = False) -> str:
    """A fresh hidden temp path in the directory of ``final``."""
    directory, base = os.path.split(final)
    return os.path.join(directory, temp_name(base, keep_ext=keep_ext))


def is_temp_name(name: str) -> bool:
    """Whether the base name ``name`` is one of our temp files."""
    return TEMP_MARKER in name and TEMP_NAME.match(name) is not None


def temp_base(name: str) -> str | None:
    """The (possibly shortened) final name a temp name stands for, None if not a temp name."""
    match = TEMP_NAME.match(name)
    return None if match is None else match.group("base")


def writer_alive(name: str) -> bool | None:
    """Whether the process that writes temp file ``name`` still runs: True/False when it
    ran on this host, None when unknown (another host, or a name without a pid)."""
    match = TEMP_NAME.match(name)
    if match is None or match.group("pid") is None or match.group("host") != host_id():
        return None
    pid = int(match.group("pid"))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return None
    return True


def object_name(prefix: str, path: str) -> str:
    """The store name of relative ``path`` below ``prefix`` (``""`` = store root)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{path}" if prefix else path


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal, e.g. ``62.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
