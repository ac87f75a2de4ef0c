"""Branch-switch benchmark (issue 13): a machine switching back to a code version whose
results are in the cloud, with ``--download``, against recomputing them, in the same run.

    python -m benchmarks.branch_switch [--n-rows 200000] [--azurite --latency-ms 10]
    python -m benchmarks --only branch      # the same, as rows of the suite (local remote)

The example pipeline is copied into a temporary package (so its code can change). Machine
a runs it on code v2 with ``--upload``; machine b changes ``summarize`` (v3: LabelStats,
StatsTable and FinalTask change) and runs ``--download --upload``, so the latest cloud
version is v3's. Then, each in a fresh working dir on v2: ``--download`` (the switch back:
v2's results are versions in the cloud) and a plain run (the recompute). Every step is
the ``luisy`` command in a subprocess, timed end to end; the remote is a local directory,
or a private Azurite behind the latency proxy with ``--azurite``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from benchmarks.azurite import ACCOUNT, KEY, endpoint_with_latency, start_azurite

REPO = Path(__file__).resolve().parents[1]
V2 = 'round(float(values.mean()), 6)'
V3 = 'round(float(values.mean()), 5)'


def _step(src: Path, env: Mapping[str, str], wd: Path, n_rows: int, *flags: str) -> tuple[float, int]:
    """Run the copied pipeline's FinalTask in ``wd``: (seconds, tasks run)."""
    report = wd.parent / f"{wd.name}-{uuid.uuid4().hex[:6]}.json"
    args = [sys.executable, "-m", "luisy.cli", "--module", f"{src.name}.tasks", "FinalTask",
            "--n-rows", str(n_rows), *flags, "--working-dir", str(wd), "--no-ask", "--json", str(report)]
    started = time.perf_counter()
    proc = subprocess.run(args, env=dict(env), capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"luisy {' '.join(flags)} failed: {proc.stderr[-2000:]}")
    return seconds, len(json.loads(report.read_text())["tasks"].get("completed", []))


def _set_code(src: Path, old: str, new: str) -> None:
    path = src / "tasks.py"
    text = path.read_text()
    path.write_text(text.replace(old, new))
    st = path.stat()  # a new mtime even within the same second, so hashes are recomputed
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def run(root: Path, env: dict[str, str], n_rows: int) -> dict[str, tuple[float, int]]:
    """The steps of the benchmark: name -> (seconds, tasks run)."""
    src = root / "src" / f"branchbench_{uuid.uuid4().hex[:8]}"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("")
    text = (REPO / "luisy" / "examples" / "pipeline.py").read_text()
    assert V2 in text, "the example pipeline changed: update V2/V3"
    (src / "tasks.py").write_text(text.replace('PROJECT = "luisy_example"', 'PROJECT = "branchbench"'))
    env = {**env, "PYTHONPATH": os.pathsep.join([str(src.parent), str(REPO), env.get("PYTHONPATH", "")]),
           "LUISY_SYNC_CACHE": "off"}
    steps: dict[str, tuple[float, int]] = {}
    steps["v2 --upload (machine a)"] = _step(src, env, root / "a", n_rows, "--upload")
    _set_code(src, V2, V3)
    steps["v3 --download --upload (machine b)"] = _step(src, env, root / "b", n_rows, "--download", "--upload")
    _set_code(src, V3, V2)
    steps["back to v2: --download (fresh machine)"] = _step(src, env, root / "c", n_rows, "--download")
    steps["back to v2: recompute (fresh machine)"] = _step(src, env, root / "d", n_rows)
    return steps


def figure(n_rows: int, reps: int) -> list[dict]:
    """Rows for ``python -m benchmarks``: the switch back with ``--download`` (ours) and
    the recompute (the baseline) on a local directory remote, min of ``reps`` runs."""
    from benchmarks.report import row

    name = f"branch switch back to v2, example pipeline {n_rows} rows (local remote)"
    times: dict[str, list[float]] = {"switch": [], "recompute": []}
    ran: dict[str, int] = {}
    error = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUISY_", "AZURE_STORAGE"))}
    for _ in range(reps):
        root = Path(tempfile.mkdtemp(prefix="luisy-branch-"))
        try:
            steps = run(root, {**env, "LUISY_REMOTE": (root / "remote").as_uri()}, n_rows)
        except RuntimeError as exc:
            error = str(exc).splitlines()[0]
            break
        finally:
            shutil.rmtree(root, ignore_errors=True)
        for what, step in (("switch", "back to v2: --download (fresh machine)"),
                           ("recompute", "back to v2: recompute (fresh machine)")):
            times[what].append(steps[step][0])
            ran[what] = steps[step][1]
    best = {k: (min(v) if v and error is None else None) for k, v in times.items()}
    return [row("branch", name, "luisy --download (versions in the cloud)", best["switch"], times["switch"],
                error, role="ours", unit="tasks", tasks_run=ran.get("switch")),
            row("branch", name, "recompute (no cloud)", best["recompute"], times["recompute"], error,
                role="baseline", unit="tasks", tasks_run=ran.get("recompute"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.branch_switch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--n-rows", type=int, default=200_000, help="rows of the example data (200000)")
    parser.add_argument("--azurite", action="store_true", help="a private Azurite instead of a local dir")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="with --azurite: delay each way (10)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="luisy-branch-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUISY_", "AZURE_STORAGE"))}
    try:
        with contextlib.ExitStack() as stack:
            if args.azurite:
                azurite = start_azurite()
                stack.callback(azurite.stop)
                env.update({"LUISY_AZURE_ACCOUNT_NAME": ACCOUNT, "LUISY_AZURE_STORAGE_KEY": KEY,
                            "LUISY_AZURE_ENDPOINT": endpoint_with_latency(stack, azurite.port, args.latency_ms),
                            "LUISY_AZURE_CONTAINER_NAME": "branch" + uuid.uuid4().hex[:10]})
                where = f"Azurite +{args.latency_ms:g} ms each way"
            else:
                env["LUISY_REMOTE"] = (root / "remote").as_uri()
                where = "a local directory remote"
            steps = run(root, env, args.n_rows)
    except RuntimeError as exc:
        print(f"branch_switch: error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"example pipeline, {args.n_rows} rows, {where}; the luisy command end to end")
    for name, (seconds, ran) in steps.items():
        print(f"  {name:40s} {seconds:7.2f} s  {ran} task(s) ran")
    switch = steps["back to v2: --download (fresh machine)"][0]
    recompute = steps["back to v2: recompute (fresh machine)"][0]
    print(f"branch switch with --download: {switch:.2f} s against {recompute:.2f} s recomputing "
          f"({recompute / switch:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
