"""Benchmark luisy.codehash.compute_task_hashes on generated pipelines.

Generates packages of 10 / 100 / 500 task instances (classes spread over
several modules, helpers in the same and in other modules, constants, project
base classes, chains and a fan-in), then times hashing in fresh processes
(cold: every module parsed) and again in the same process (warm: cached).

    python benchmarks/codehash_bench.py [--sizes 10 100 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTANCES_PER_CLASS = 10
CLASSES_PER_MODULE = 10


def _helpers_module(k: int) -> str:
    return textwrap.dedent(
        f"""
        import math

        FACTOR_{k} = {k + 2}


        def scale_{k}(x):
            \"\"\"Scale x.\"\"\"
            return x * FACTOR_{k} + shift_{k}(x)


        def shift_{k}(x):
            return math.floor(x / 2) if x > 0 else scale_{k}(x + 1)


        def unused_{k}():
            return None
        """
    )


def _tasks_module(m: int, classes: range, helper_modules: int) -> str:
    lines = [
        "import luigi",
        "",
        f"from . import helpers_{m % helper_modules} as hm",
        f"from .helpers_{(m + 1) % helper_modules} import scale_{(m + 1) % helper_modules}",
        "from .base import ProjectTask",
        "",
        f"LIMIT_{m} = {m * 7}",
        "",
        "",
        f"def prepare_{m}(x):",
        f"    return [scale_{(m + 1) % helper_modules}(v) for v in range(x)] + [LIMIT_{m}]",
        "",
    ]
    for c in classes:
        previous = f"from .tasks_{(c - 1) // CLASSES_PER_MODULE} import Task{c - 1}" if c else ""
        lines += [
            "",
            f"class Task{c}(ProjectTask):",
            f'    """Task number {c}."""',
            "",
            "    i = luigi.IntParameter()",
            "",
            "    def requires(self):",
            f"        {previous}" if previous else "        pass",
            "        deps = []",
            "        if self.i > 0:",
            f"            deps.append(Task{c}(i=self.i - 1))",
            *([f"        deps.append(Task{c - 1}(i=self.i))"] if c else []),
            "        return deps",
            "",
            "    def run(self):",
            f"        return hm.scale_{m % helper_modules}(self.i) + sum(prepare_{m}(self.i))",
        ]
    return "\n".join(lines) + "\n"


def generate(root: Path, name: str, tasks: int) -> tuple[int, int]:
    """Write package ``name``; returns (number of classes, number of modules)."""
    classes = max(1, tasks // INSTANCES_PER_CLASS)
    modules = (classes + CLASSES_PER_MODULE - 1) // CLASSES_PER_MODULE
    helper_modules = max(1, modules)
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text(
        "import luigi\n\n\nclass ProjectTask(luigi.Task):\n    def complete(self):\n        return False\n"
    )
    for k in range(helper_modules):
        (package / f"helpers_{k}.py").write_text(_helpers_module(k))
    for m in range(modules):
        members = range(m * CLASSES_PER_MODULE, min(classes, (m + 1) * CLASSES_PER_MODULE))
        (package / f"tasks_{m}.py").write_text(_tasks_module(m, members, helper_modules))
    fan_in = "\n".join(
        [
            "import luigi",
            f"from .tasks_{(classes - 1) // CLASSES_PER_MODULE} import Task{classes - 1}",
            "",
            "",
            "class FanIn(luigi.WrapperTask):",
            "    def requires(self):",
            f"        return [Task{classes - 1}(i=i) for i in range({INSTANCES_PER_CLASS})]",
        ]
    )
    (package / "final.py").write_text(fan_in + "\n")
    return classes, modules * 2 + 2


def _worker(root: str, name: str) -> None:
    """In a fresh process: import, hash cold, hash warm; print JSON timings."""
    sys.path.insert(0, root)
    started = time.perf_counter()
    import importlib

    from luisy.codehash import clear_caches, compute_task_hashes

    final = importlib.import_module(f"{name}.final")
    imported = time.perf_counter()
    root_task = final.FanIn()
    begin = time.perf_counter()
    cold = compute_task_hashes([root_task])
    cold_s = time.perf_counter() - begin
    warm_runs = []
    for _ in range(5):
        begin = time.perf_counter()
        warm = compute_task_hashes([root_task])
        warm_runs.append(time.perf_counter() - begin)
    assert warm == cold
    from luisy.codehash import _upstream_order

    begin = time.perf_counter()
    _upstream_order([root_task])  # luigi's requires() alone: the floor for any hasher
    graph_s = time.perf_counter() - begin
    clear_caches()
    begin = time.perf_counter()
    compute_task_hashes([root_task])
    cleared_s = time.perf_counter() - begin
    print(json.dumps({
        "tasks": len(cold),
        "import_s": imported - started,
        "cold_s": cold_s,
        "warm_s": min(warm_runs),
        "cleared_s": cleared_s,
        "graph_s": graph_s,
        "digest": cold[root_task],
    }))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per size")
    parser.add_argument("--worker", nargs=2, metavar=("ROOT", "PACKAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker)
        return 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("LUISY_REQUIREMENTS_PATH", None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="codehash-bench-") as tmp:
        for size in args.sizes:
            name = f"bench_pipeline_{size}"
            classes, files = generate(Path(tmp), name, size)
            results = []
            for _ in range(args.repeat):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", tmp, name],
                    env=env, capture_output=True, text=True, check=True, timeout=600,
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if len({r["digest"] for r in results}) != 1:
                raise SystemExit("error: digests differ between processes")
            rows.append((size, results[0]["tasks"], classes, files, results))
    print(f"{'pipeline':>8} {'tasks':>6} {'classes':>7} {'files':>5} "
          f"{'cold ms':>9} {'warm ms':>9} {'cleared ms':>10} {'requires ms':>11} {'import ms':>9}")
    for size, tasks, classes, files, results in rows:
        def median(key: str) -> float:
            return statistics.median(r[key] for r in results) * 1000

        print(f"{size:>8} {tasks:>6} {classes:>7} {files:>5} {median('cold_s'):>9.1f} "
              f"{median('warm_s'):>9.2f} {median('cleared_s'):>10.1f} {median('graph_s'):>11.2f} "
              f"{median('import_s'):>9.1f}")
    print("cold: first hash in a fresh process (parses every module); warm: repeated call;"
          " cleared: after clear_caches() in the same process; requires: walking the graph"
          " through luigi's requires() only. Median of", args.repeat, "processes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
