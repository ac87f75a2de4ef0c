"""Scanning: local directories and store listings -> Trees.

``scan`` walks a directory (``os.scandir`` in a worker thread), looks every file up in
the stat cache in the same thread call, and hashes only the misses, concurrently in
threads under a CapacityLimiter (small files are hashed in batches to keep the
per-call overhead low).

Glob patterns (``include`` / ``exclude``) are matched against POSIX paths relative to
the root, gitignore-style:

- ``*`` and ``?`` match within one path segment, ``[abc]`` / ``[!abc]`` a character class;
- ``**`` matches any number of segments (``data/**/*.csv``, ``**/tmp``);
- a pattern without ``/`` matches a file or directory name at any depth (``*.csv``);
  a pattern with ``/`` is anchored at the root (``data/raw``, a leading ``/`` is allowed);
- a pattern that matches a directory matches everything below it;
- a file is kept when it matches some include pattern (or none are given) and no
  exclude pattern.

Always skipped, and reported through ``left_out``: luisy_sync's own temporary files (names
matching ``luisy_sync.conventions.TEMP_NAME`` exactly) and a ``.luisy-store`` bookkeeping
directory at the root (a LocalStore's; one deeper down is ordinary data).

Symlinks are followed when they resolve inside the root; one resolving outside the root
raises UnsafePathError unless ``follow_symlinks=True``. Dangling symlinks and symlink loops are skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import re
import stat as stat_mod
from typing import Iterable, Literal, Sequence

import anyio

from luisy_sync.batching import batched
from luisy_sync.conventions import STORE_DIR, TEMP_MARKER, is_temp_name
from luisy_sync.errors import SyncError, UnsafePathError
from luisy_sync.hashing import hash_fileobj
from luisy_sync.paths import join_under, safe_relpath
from luisy_sync.stores.base import ObjectInfo
from luisy_sync.statcache import NullStatCache, StatCache, stat_key
from luisy_sync.tree import FileEntry, Tree

log = logging.getLogger(__name__)

_BATCH_BYTES = 16 * 1024 * 1024
_BATCH_FILES = 256

Cache = StatCache | NullStatCache
Candidate = tuple[str, str, os.stat_result]
"""A walked file: (relative path, absolute path, stat)."""


def default_hash_limiter() -> anyio.CapacityLimiter:
    """A limiter for hashing threads: min(8, 2 * CPUs)."""
    return anyio.CapacityLimiter(min(8, 2 * (os.cpu_count() or 1)))


# -- glob patterns ---------------------------------------------------------------------
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile one glob pattern (see the module docstring) to a regex for full matches."""
    pat = pattern.strip()
    if not pat or pat == "/":
        raise ValueError(f"empty glob pattern {pattern!r}")
    anchored = "/" in pat.rstrip("/")
    pat = pat.strip("/")
    out: list[str] = [] if anchored else ["(?:.*/)?"]
    i = 0
    while i < len(pat):
        ch = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[" and _class_end(pat, i) > 0:
            end = _class_end(pat, i)
            body = pat[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out))


def _class_end(pat: str, start: int) -> int:
    """Index of the ``]`` closing the character class opened at ``start``, or -1."""
    j = start + 1
    if pat[j:j + 1] == "!":
        j += 1
    if pat[j:j + 1] == "]":
        j += 1
    return pat.find("]", j)


class PathFilter:
    """include / exclude glob patterns applied to relative POSIX paths."""

    def __init__(self, include: Sequence[str] | str | None = None,
                 exclude: Sequence[str] | str | None = None):
        self.include = [glob_to_regex(p) for p in _as_list(include)]
        self.exclude = [glob_to_regex(p) for p in _as_list(exclude)]
        self.keeps_everything = not self.include and not self.exclude
        """True when no pattern was given (every file is wanted)."""

    def excludes_dir(self, rel: str) -> bool:
        """True when a directory (and so all below it) is excluded."""
        return any(rx.fullmatch(rel) for rx in self.exclude)

    def wants(self, rel: str) -> bool:
        """True when the file ``rel`` passes the include and exclude patterns."""
        if not self.include and not self.exclude:
            return True
        prefixes = _self_and_parents(rel)
        if self.include and not any(rx.fullmatch(p) for rx in self.include for p in prefixes):
            return False
        return not any(rx.fullmatch(p) for rx in self.exclude for p in prefixes)


def _as_list(patterns: Sequence[str] | str | None) -> list[str]:
    if patterns is None:
        return []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _self_and_parents(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


# -- directory walk ----------------------------------------------------------------------
def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk_files(root: str, real_root: str, start_rel: str, start_abs: str, pfilter: PathFilter,
               follow_symlinks: bool, left_out: list[str] | None = None) -> list[Candidate]:
    """All regular files below ``start_abs`` that pass ``pfilter`` (runs in a thread);
    the reserved names skipped are appended to ``left_out``."""
    found: list[Candidate] = []
    skipped = left_out if left_out is not None else []
    wants = None if pfilter.keeps_everything else pfilter.wants
    stack = [(start_rel, start_abs)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        head = rel_dir + "/" if rel_dir else ""
        try:
            it = os.scandir(abs_dir)
        except OSError as exc:
            raise SyncError(f"cannot list directory {abs_dir}: {exc.strerror or exc}") from None
        with it:
            for entry in it:
                name = entry.name
                rel = head + name
                if TEMP_MARKER in name and is_temp_name(name):
                    skipped.append(rel)
                    continue
                if entry.is_file(follow_symlinks=False):  # the common case first: a regular file
                    if wants is None or wants(rel):
                        found.append((rel, entry.path, entry.stat(follow_symlinks=False)))
                    continue
                if entry.is_symlink():
                    st = _follow_link(entry.path, rel, root, real_root, abs_dir, follow_symlinks)
                    if st is None:
                        continue
                    is_dir = stat_mod.S_ISDIR(st.st_mode)
                else:
                    is_dir, st = entry.is_dir(follow_symlinks=False), None
                if is_dir:
                    if rel == STORE_DIR:
                        skipped.append(rel + "/")
                    elif not pfilter.excludes_dir(rel):
                        stack.append((rel, entry.path))
                elif st is not None and (wants is None or wants(rel)):
                    found.append((rel, entry.path, st))
    return found


def _follow_link(path: str, rel: str, root: str, real_root: str, abs_dir: str,
                 follow_outside: bool) -> os.stat_result | None:
    """The stat of a symlink's target, None to skip it; raises for links leaving root."""
    target = os.path.realpath(path)
    if not follow_outside and not _is_under(target, real_root):
        raise UnsafePathError(f"refusing symlink {rel!r} -> {target}: it points outside {root}; "
                              "replace it with a copy or pass follow_symlinks=True")
    try:
        st = os.stat(path)
    except OSError:
        log.warning("skipping dangling symlink %s -> %s", rel, target)
        return None
    if stat_mod.S_ISDIR(st.st_mode) and _is_under(os.path.realpath(abs_dir), target):
        log.warning("skipping symlink loop %s -> %s", rel, target)
        return None
    return st


# -- hashing with the cache ----------------------------------------------------------------
def split_cache_hits(candidates: list[Candidate], cache: Cache, root: str, complete: bool = False
                     ) -> tuple[dict[str, FileEntry], list[Candidate]]:
    """Entries answered by the cache, and the candidates (files below ``root``) that need
    hashing. ``complete``: the candidates are every file below ``root`` (an unfiltered
    walk), so the cache may forget the others."""
    hits: dict[str, FileEntry] = {}
    misses: list[Candidate] = []
    digests = cache.get_many([(path, stat_key(st)) for _, path, st in candidates], under=root)
    if complete:
        cache.forget_others(root, [path for _, path, _ in candidates])
    for candidate, digest in zip(candidates, digests):
        if digest is None:
            misses.append(candidate)
        else:
            st = candidate[2]
            hits[candidate[0]] = FileEntry(st.st_size, digest, st.st_mtime_ns)
    return hits, misses


def _hash_stable(rel: str, path: str) -> tuple[os.stat_result, str] | None:
    """Hash one file and return it with the stat it had while hashed; None if it vanished."""
    for _ in range(3):
        try:
            with open(path, "rb", buffering=0) as fh:
                before = os.fstat(fh.fileno())
                digest = hash_fileobj(fh, size_hint=before.st_size)
                after = os.fstat(fh.fileno())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SyncError(f"cannot read {path}: {exc.strerror or exc}") from None
        if stat_key(before) == stat_key(after):
            return after, digest
    raise SyncError(f"{rel} kept changing while it was hashed; retry once it is complete")


def _hash_batch(batch: list[Candidate], cache: Cache) -> dict[str, FileEntry | None]:
    out: dict[str, FileEntry | None] = {}
    for rel, path, _ in batch:
        result = _hash_stable(rel, path)
        if result is None:
            out[rel] = None
            continue
        st, digest = result
        cache.put(path, stat_key(st), digest)
        out[rel] = FileEntry(st.st_size, digest, st.st_mtime_ns)
    return out


def _batches(misses: list[Candidate]) -> list[list[Candidate]]:
    """Group small files so that one thread call hashes many of them."""
    return batched(sorted(misses, key=lambda c: c[2].st_size, reverse=True),
                   lambda c: c[2].st_size, max_items=_BATCH_FILES, max_bytes=_BATCH_BYTES)


async def _digest_all(candidates: list[Candidate], root: str, cache: Cache | Literal[False] | None,
                      limiter: anyio.CapacityLimiter | None, complete: bool = False
                      ) -> dict[str, FileEntry | None]:
    """FileEntry per candidate (None for files that vanished meanwhile); ``complete`` as
    for ``split_cache_hits``."""
    cache = cache if cache is not None and cache is not False else NullStatCache()
    limiter = limiter if limiter is not None else default_hash_limiter()
    hits, misses = await anyio.to_thread.run_sync(split_cache_hits, candidates, cache, root, complete,
                                                  limiter=limiter)
    results: dict[str, FileEntry | None] = dict(hits)
    if misses:
        results.update(await hash_candidates(misses, cache, limiter))
    return results


async def hash_candidates(candidates: list[Candidate], cache: Cache, limiter: anyio.CapacityLimiter
                          ) -> dict[str, FileEntry | None]:
    """Hash walked files (largest first, small ones in batches, concurrently under
    ``limiter``), record them in ``cache`` and flush it; FileEntry per file (None for one
    that vanished). The first error cancels the rest and is raised."""
    results: dict[str, FileEntry | None] = {}
    errors: list[BaseException] = []

    async def work(batch: list[Candidate]) -> None:
        try:
            done = await anyio.to_thread.run_sync(_hash_batch, batch, cache, limiter=limiter)
        except Exception as exc:  # first failure cancels the rest, re-raised below
            errors.append(exc)
            tg.cancel_scope.cancel()
            return
        results.update(done)

    async with anyio.create_task_group() as tg:
        for batch in _batches(candidates):
            tg.start_soon(work, batch)
    await anyio.to_thread.run_sync(cache.flush, limiter=limiter)
    if errors:
        raise errors[0]
    return results


# -- public API ------------------------------------------------------------------------------
def resolve_root(root: str | os.PathLike[str]) -> tuple[str, str]:
    """``(absolute root, real path of it)`` of a directory to scan; SyncError when it is
    missing or not a directory."""
    abs_root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(abs_root):
        what = "is not a directory" if os.path.exists(abs_root) else "does not exist"
        raise SyncError(f"cannot scan {abs_root}: it {what}")
    return abs_root, os.path.realpath(abs_root)


async def scan(root: str | os.PathLike[str], *, include: Sequence[str] | str | None = None,
               exclude: Sequence[str] | str | None = None, cache: Cache | Literal[False] | None = None,
               hash_limiter: anyio.CapacityLimiter | None = None,
               follow_symlinks: bool = False, left_out: list[str] | None = None) -> Tree:
    """The Tree of every file below ``root`` that passes ``include``/``exclude``.

    ``cache``: a stat cache, or None/False for none. ``left_out``: a list that receives
    the reserved names skipped (temp files, a root ``.luisy-store/``)."""
    abs_root, real_root = resolve_root(root)
    pfilter = PathFilter(include, exclude)
    candidates = await anyio.to_thread.run_sync(
        walk_files, abs_root, real_root, "", abs_root, pfilter, follow_symlinks, left_out)
    entries = await _digest_all(candidates, abs_root, cache, hash_limiter, complete=pfilter.keeps_everything)
    return Tree({p: e for p, e in entries.items() if e is not None}, root=abs_root)


async def tree_from_paths(root: str | os.PathLike[str], paths: Iterable[str], *,
                          cache: Cache | Literal[False] | None = None,
                          hash_limiter: anyio.CapacityLimiter | None = None,
                          missing: Literal["error", "skip"] = "error") -> Tree:
    """The Tree of the named relative ``paths`` below ``root`` (a directory name stands for
    every file below it). ``missing="error"`` raises SyncError for a path that does not
    exist; ``"skip"`` leaves it out."""
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', not {missing!r}")
    abs_root, real_root = resolve_root(root)
    names = [safe_relpath(p) for p in dict.fromkeys(paths)]
    candidates = await anyio.to_thread.run_sync(
        _stat_paths, abs_root, real_root, names, missing == "error")
    entries = await _digest_all(candidates, abs_root, cache, hash_limiter)
    vanished = [p for p, e in entries.items() if e is None]
    if vanished and missing == "error":
        raise SyncError(f"{vanished[0]} disappeared from {abs_root} while it was scanned")
    return Tree({p: e for p, e in entries.items() if e is not None}, root=abs_root)


def _stat_paths(abs_root: str, real_root: str, names: list[str], strict: bool) -> list[Candidate]:
    found: dict[str, Candidate] = {}
    everything = PathFilter()
    for rel in names:
        path = join_under(abs_root, rel)
        if not _is_under(os.path.realpath(path), real_root):
            raise UnsafePathError(f"refusing {rel!r}: it resolves outside {abs_root} through a symlink")
        try:
            st = os.stat(path)
        except OSError:
            if strict:
                raise SyncError(f"{rel}: no such file below {abs_root}; check the path") from None
            continue
        if stat_mod.S_ISDIR(st.st_mode):
            for cand in walk_files(abs_root, real_root, rel, path, everything, False):
                found[cand[0]] = cand
        elif stat_mod.S_ISREG(st.st_mode):
            found[rel] = (rel, path, st)
        elif strict:
            raise SyncError(f"{rel} is not a regular file or directory; only files can be synced")
    return list(found.values())


def remote_tree(objects: Iterable[ObjectInfo], prefix: str = "", leave_out: str | None = None) -> Tree:
    """A Tree from a store listing: names below ``prefix`` (stripped of it), digests from
    object metadata (None when absent). Bookkeeping objects (``.luisy-store/``),
    temporary names, directory markers (names ending in ``/``) and the name
    ``leave_out`` (below ``prefix``, e.g. the push manifest) are left out."""
    head = prefix.strip("/") + "/" if prefix.strip("/") else ""
    cut, store_head = len(head), STORE_DIR + "/"
    entries: dict[str, FileEntry] = {}
    for obj in objects:
        name = obj.name
        if head:
            if not name.startswith(head):
                continue
            name = name[cut:]
        if not name or name[-1] == "/" or (TEMP_MARKER in name and is_temp_name(name.rpartition("/")[2])):
            continue
        if name.startswith(store_head) or name == STORE_DIR or name == leave_out:
            continue
        entries[name] = FileEntry(obj.size, obj.digest)
    return Tree(entries)
