"""Run the distributed pipeline: a private ``luigid`` and several ``luisy`` worker processes.

Used by tests/cloud/test_distributed_*.py and benchmarks/distributed_bench.py. Everything
listens on 127.0.0.1 only; every process started here is stopped by its owner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from benchmarks.azurite import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
MODULE = "distpipe"
ROOT_TASK = "Total"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Luigid:
    """A running luigi central scheduler on 127.0.0.1."""

    port: int
    process: subprocess.Popen
    location: str

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> "Luigid":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_luigid(timeout: float = 30.0, done_cooldown: float | None = None) -> Luigid:
    """Start ``luigid`` on a free loopback port and wait until it answers HTTP.

    ``done_cooldown``: luigid's ``stable_done_cooldown_secs`` (default 10 s): how long
    it ignores a PENDING claim for a task that just became DONE.
    """
    location = tempfile.mkdtemp(prefix="luigid-")
    os.makedirs(os.path.join(location, "logs"))
    env = dict(os.environ)
    if done_cooldown is not None:
        config = os.path.join(location, "luigi.cfg")
        with open(config, "w", encoding="utf-8") as fh:
            fh.write(f"[scheduler]\nstable_done_cooldown_secs = {int(done_cooldown)}\n")
        env["LUIGI_CONFIG_PATH"] = config
    port = free_port()
    cmd = [sys.executable, "-c", "import luigi.cmdline; luigi.cmdline.luigid()",
           "--port", str(port), "--address", "127.0.0.1",
           "--state-path", os.path.join(location, "state.pickle"),
           "--logdir", os.path.join(location, "logs")]
    log = open(os.path.join(location, "luigid.out"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=location,
                            env=env)
    log.close()
    server = Luigid(port, proc, location)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(os.path.join(location, "luigid.out"), "rb") as fh:
                tail = fh.read()[-500:].decode(errors="replace")
            server.stop()
            raise RuntimeError(f"luigid exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/task_list?data=%7B%7D",
                                        timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"luigid did not answer on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class WorkerRun:
    """One finished ``luisy`` worker process."""

    working_dir: str
    returncode: int
    output: str


@dataclass
class FleetResult:
    """All workers of one distributed run, the run counts and the wall time."""

    workers: list[WorkerRun]
    counts: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def worker_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, REPO, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def run_fleet(base: str, port: int | None, n_machines: int, *, workers: int = 2,
              flags: tuple[str, ...] = ("--upload", "--download"), sleep: float = 0.3,
              env: dict[str, str] | None = None, timeout: float = 120.0,
              extra_args: tuple[str, ...] = (), machine_offset: int = 0) -> FleetResult:
    """Start ``n_machines`` luisy processes at once, each with its own working dir below
    ``base`` (``machine<i>``), against luigid on ``port`` (None: local schedulers).

    Runs are counted in ``base/runs.txt`` (shared by later fleets in the same ``base``).
    """
    counter = os.path.join(base, "runs.txt")
    extra = {"DIST_COUNTER": counter, "DIST_SLEEP": str(sleep), **(env or {})}
    procs = []
    started = time.monotonic()
    for i in range(machine_offset, machine_offset + n_machines):
        wd = os.path.join(base, f"machine{i}")
        os.makedirs(wd, exist_ok=True)
        cmd = [sys.executable, "-m", "luisy", "--module", MODULE, ROOT_TASK,
               "--working-dir", wd, "--no-ask", "--workers", str(workers), *flags, *extra_args]
        if port is None:
            cmd.append("--local-scheduler")
        else:
            cmd += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(port)]
        out = open(os.path.join(base, f"machine{i}.log"), "wb")
        procs.append((wd, out, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                env=worker_env(extra), cwd=base)))
    runs = []
    deadline = time.monotonic() + timeout
    try:
        for wd, out, proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for wd, out, proc in procs:
            _stop(proc)
            out.close()
    seconds = time.monotonic() - started
    for i, (wd, _out, proc) in enumerate(procs, start=machine_offset):
        with open(os.path.join(base, f"machine{i}.log"), encoding="utf-8", errors="replace") as fh:
            runs.append(WorkerRun(wd, proc.returncode, fh.read()))
    counts: Counter = Counter()
    if os.path.exists(counter):
        with open(counter, encoding="utf-8") as fh:
            counts.update(line.strip() for line in fh if line.strip())
    return FleetResult(runs, counts, seconds)
