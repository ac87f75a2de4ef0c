"""Scale rows: many small files and one huge file through the CLI, each run a process of its own.

For each size (10k and 100k x 4 KiB in 100 folders, and one 4 GiB file; ``--quick``:
500 and 1500 files and one 32 MiB file) and each store (the local store ``file://`` and
Azurite through the 0 ms proxy): ``luisy_sync push``, a second push with nothing
changed (no-op) and ``luisy_sync pull`` into an empty directory. Local baselines in
the same run: ``rclone copy --transfers 32`` and ``cp -r`` (push = copy the tree into
a store directory, pull = copy it back out, no-op = rclone copy again). Every command
is timed as a whole process (start-up included) with its own user + system CPU (from
``wait4``) and peak RSS (from GNU time when installed), after ``os.sync()`` and a 1 s pause (each command starts on a
settled file system). The trees of many files that the commands make are removed only
after the section's last timed command, never between two of them: on ext4 a file
created within a minute of mass deletes pays for them (the inode allocator skips every
recently deleted inode, checking each in the inode table: 25 us per created file settled,
167 us one second after an ``rm -rf`` of 100k files, 28 us a minute later), and which
command came right after which delete would otherwise decide the rows. With ``reps``
each command runs that many times, interleaved (all clients in turn per repetition), and
a row is the minimum (all times are kept). Azurite takes ~3 ms per small file on 2 cores, so its 100k
rows (~12 minutes) run only when asked for (``--only scale,scale-azurite-100k``); the first pushes have no warm stat cache. 10k and 100k run in
the same run, so the rows show how time, CPU and memory grow with the file count.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from benchmarks.azurite import ACCOUNT, KEY
from benchmarks.processes import remove_tree
from benchmarks.report import row
from benchmarks.workloads import MiB, _age, _write_random

KiB = 1024
GiB = 1024 * MiB
SMALL = 4 * KiB
FOLDERS = 100
SIZES = {"full": ((10_000, 100_000), 4 * GiB), "quick": ((500, 1_500), 32 * MiB)}
TIMEOUT = 1800.0
SETTLE_S = 1.0
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
"""Runs each command to report its own peak RSS (see ``timed_process``)."""


def generate_many(root: str, count: int, size: int = SMALL) -> str:
    """``count`` random files of ``size`` bytes spread over FOLDERS directories."""
    base = os.path.join(root, f"scale{count}")
    for i in range(count):
        folder = os.path.join(base, f"d{i % FOLDERS:03d}")
        if i < FOLDERS:
            os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"f{i:06d}.bin")
        with open(path, "wb") as fh:
            fh.write(os.urandom(size))
        _age(path)
    return base


def generate_big(root: str, size: int) -> str:
    base = os.path.join(root, f"big{size // MiB}m")
    path = os.path.join(base, "huge.bin")
    _write_random(path, size)
    _age(path)
    return base


def _kill_group(pid: int) -> None:
    """Kill a timed command and what it started (GNU time's child too)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def timed_process(cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd`` to completion: wall seconds, CPU seconds and peak RSS of that process
    (and its children) from ``wait4``; ``error`` is its last stderr line on failure.

    The peak RSS comes from GNU time (``%M``) when it is installed: ``wait4``'s counts the
    memory the child shared with this process before ``exec`` (measured: ``true`` started
    from a 200 MB process "peaks" at 213 MB, through ``time`` at 1 MB).

    The file system is settled first (``os.sync()`` and a short pause), so that no command
    pays for the writeback of what the previous one wrote, or the discards of what was
    deleted before it (ext4 mounted with ``discard`` commits those with the next writes).
    Settling does not end the inode allocator's skipping of recently deleted inodes
    (a minute): ``scale`` therefore deletes no tree of many files between commands."""
    os.sync()
    time.sleep(SETTLE_S)
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        wrapped = [GNU_TIME, "-f", "%M", "-o", peak.name, *cmd] if GNU_TIME else cmd
        proc = subprocess.Popen(wrapped, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        killer = threading.Timer(TIMEOUT, _kill_group, (proc.pid,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
        rss_kib = usage.ru_maxrss
        if GNU_TIME:
            try:
                rss_kib = int(peak.read().split()[-1])
            except (ValueError, IndexError):  # killed before time wrote it: keep wait4's
                pass
    res = {"seconds": seconds, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": rss_kib / 1024,
           "error": None}
    if proc.returncode != 0:
        res["seconds"] = None
        res["error"] = f"exit {proc.returncode}: {(lines[-1] if lines else 'no output')[:200]}"
    return res


def _rows(figure: str, client: str, runs: list[dict], files: int, nbytes: int, role: str, **extra) -> dict:
    """One row from the runs of one command: the fastest run's time, CPU and peak RSS,
    every run's time; a run that failed makes the row an error."""
    failed = next((r for r in runs if r["seconds"] is None), None)
    best = failed or min(runs, key=lambda r: r["seconds"])
    times = [r["seconds"] for r in runs if r["seconds"]]
    return row("scale", figure, client, best["seconds"], times if not failed else [], best["error"], role=role,
               nbytes=nbytes, files=files, cpu_s=best["cpu_s"], peak_rss_mb=best["rss_mb"],
               reps=len(runs), **extra)


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


Runs = dict[tuple[str, str, str], list[dict]]
"""(figure, client, role) -> the runs of that command, with the row's extra fields."""


def scale(tmp: str, quick: bool, azurite_endpoint: str | None, log,
          azurite_max_files: int | None = None, reps: int = 1) -> list[dict]:
    """All scale rows (see the module docstring); Azurite gets only the sizes of at
    most ``azurite_max_files`` files (None: all); every command runs ``reps`` times."""
    counts, big = SIZES["quick" if quick else "full"]
    env = dict(os.environ, LUISY_SYNC_CACHE=os.path.join(tmp, "scale-statcache.db"))
    env.pop("LUISY_AZURE_CONNECTION_STRING", None)
    rows: list[dict] = []
    cases = [(f"{_count(n)} x 4 KiB", n, n * SMALL, lambda n=n: generate_many(tmp, n)) for n in counts]
    cases.append((f"1 x {big // GiB} GiB" if big >= GiB else f"1 x {big // MiB} MiB", 1, big,
                  lambda: generate_big(tmp, big)))
    later: list[str] = []  # trees of many files: removed after the last timed command
    try:
        for label, files, nbytes, make in cases:
            log(f"scale: {label}")
            src = make()
            discard = later.append if files > 1 else remove_tree
            stores = [("local", None)]
            if azurite_endpoint and (azurite_max_files is None or files <= azurite_max_files):
                stores.append(("azurite", azurite_endpoint))
            runs: Runs = {}
            extras: dict[tuple[str, str, str], dict] = {}
            for rep in range(reps):
                for where, endpoint in stores:
                    _luisy_runs(tmp, src, label, where, endpoint, env, runs, extras, discard)
                _baseline_runs(tmp, src, label, env, runs, extras, discard)
                if reps > 1:
                    log(f"scale: {label} rep {rep + 1}/{reps} done")
            rows += [_rows(figure, client, got, files, nbytes, role, **extras[(figure, client, role)])
                     for (figure, client, role), got in runs.items()]
            discard(src)
    finally:
        for path in later:
            remove_tree(path)
    return rows


def _luisy_runs(tmp: str, src: str, label: str, where: str, endpoint: str | None, env: dict[str, str],
                runs: Runs, extras: dict, discard) -> None:
    cli = [sys.executable, "-m", "luisy_sync"]
    run_env = dict(env)
    if endpoint is None:
        remote = os.path.join(tmp, f"store-{uuid.uuid4().hex[:8]}")
        url = "file://" + remote
    else:
        remote = None
        url = f"az://s{uuid.uuid4().hex[:20]}"
        run_env.update(LUISY_AZURE_ACCOUNT_NAME=ACCOUNT, LUISY_AZURE_STORAGE_KEY=KEY,
                       LUISY_AZURE_ENDPOINT=endpoint)
    dest = os.path.join(tmp, f"pulled-{uuid.uuid4().hex[:8]}")
    try:
        os.unlink(env["LUISY_SYNC_CACHE"])
    except FileNotFoundError:
        pass
    for op, cmd in (("push", [*cli, "push", "-q", src, url]), ("no-op push", [*cli, "push", "-q", src, url]),
                    ("pull", [*cli, "pull", "-q", url, dest])):
        key = (f"scale {label} {op} ({where})", "luisy_sync", "ours")
        runs.setdefault(key, []).append(timed_process(cmd, run_env))
        extras[key] = {"op": op, "store": where}
    if remote:
        discard(remote)
    discard(dest)


def _baseline_runs(tmp: str, src: str, label: str, env: dict[str, str], runs: Runs, extras: dict,
                   discard) -> None:
    rc_env = dict(env, RCLONE_CONFIG=os.devnull)
    rclone = shutil.which("rclone")
    copy = [rclone, "copy", "--transfers", "32", "--checkers", "32", "--log-level", "ERROR"] if rclone else None
    tag = uuid.uuid4().hex[:8]
    r_store, r_back = os.path.join(tmp, f"rclone-store-{tag}"), os.path.join(tmp, f"rclone-back-{tag}")
    c_store, c_back = os.path.join(tmp, f"cp-store-{tag}"), os.path.join(tmp, f"cp-back-{tag}")
    missing = {"seconds": None, "cpu_s": None, "rss_mb": None, "error": "rclone not installed"}
    plan = [("push", "rclone copy --transfers 32", copy and [*copy, src, r_store]),
            ("no-op push", "rclone copy --transfers 32", copy and [*copy, src, r_store]),
            ("pull", "rclone copy --transfers 32", copy and [*copy, r_store, r_back]),
            ("push", "cp -r", ["cp", "-r", src, c_store]),
            ("pull", "cp -r", ["cp", "-r", c_store, c_back])]
    for op, client, cmd in plan:
        key = (f"scale {label} {op} (local)", client, "peer")
        runs.setdefault(key, []).append(timed_process(cmd, rc_env) if cmd else missing)
        extras[key] = {"op": op, "store": "local"}
    for path in (r_store, r_back, c_store, c_back):
        discard(path)
