"""Scale-out benchmark: one luisy worker against three on luigid, same 20-task pipeline.

    python -m benchmarks.distributed_bench [--sleep 0.5 --slots 1 --repeat 1]

Starts a private Azurite and a private ``luigid`` (both on 127.0.0.1), then runs the
fan-out / fan-in pipeline of tests/cloud/dist_pipeline/distpipe.py (Numbers -> 8 Part
-> 8 Refined -> 2 Half -> Total, each task sleeping ``--sleep`` seconds) twice, each
time into a fresh container, fresh working directories and a fresh luigid (it
remembers DONE task ids): once with one luisy
process, once with three started together (``--upload --download``, ``--workers
--slots`` each). Prints both wall times (process start to last exit), the ratio and
the run counts (each task must run exactly once in both set-ups).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import uuid

from benchmarks.azurite import start_azurite

HARNESS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "tests", "cloud", "dist_pipeline")
sys.path.insert(0, HARNESS)

from dist_harness import FleetResult, run_fleet, start_luigid  # noqa: E402


def one_setup(azurite, port: int, machines: int, slots: int, sleep: float) -> FleetResult:
    base = tempfile.mkdtemp(prefix=f"dist-bench-{machines}-")
    try:
        env = azurite.env("b" + uuid.uuid4().hex[:20])
        result = run_fleet(base, port, machines, workers=slots, sleep=sleep, env=env,
                           timeout=600)
        bad = [w for w in result.workers if w.returncode != 0]
        if bad:
            raise SystemExit(f"a worker failed (exit {bad[0].returncode}):\n{bad[0].output[-3000:]}")
        return result
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sleep", type=float, default=0.5, help="seconds each task sleeps")
    p.add_argument("--slots", type=int, default=1, help="luigi --workers per luisy process")
    p.add_argument("--repeat", type=int, default=1, help="runs of each set-up (best is kept)")
    args = p.parse_args(argv)
    azurite = start_azurite()
    try:
        times: dict[int, float] = {}
        for _ in range(args.repeat):
            for machines in (1, 3):
                # a fresh luigid each time: luigid remembers DONE tasks by id
                with start_luigid() as luigid:
                    result = one_setup(azurite, luigid.port, machines, args.slots, args.sleep)
                runs = sum(result.counts.values())
                once = len(result.counts) == 20 and set(result.counts.values()) == {1}
                print(f"{machines} worker process(es) x --workers {args.slots}: "
                      f"{result.seconds:6.2f} s, {runs} task runs"
                      f"{' (each task once)' if once else ' (NOT each task once!)'}")
                times[machines] = min(times.get(machines, float("inf")), result.seconds)
    finally:
        azurite.stop()
    print(f"ratio 1 worker / 3 workers: {times[1] / times[3]:.2f}x "
          f"(tasks sleep {args.sleep:g} s; 20 tasks, critical path 5 tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
