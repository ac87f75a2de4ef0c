"""Smoke test: ``python -m benchmarks.branch_switch`` switches back to a version in the
cloud with --download and runs nothing there (no speed asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.timeout(300)
def test_branch_switch_benchmark_downloads_instead_of_recomputing() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.branch_switch", "--n-rows", "2000"],
                          cwd=REPO, capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split("  ")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert lines["v3 --download --upload (machine b)"].endswith(" 5 task(s) ran")
    assert lines["back to v2: --download (fresh machine)"].endswith(" 0 task(s) ran")
    assert lines["back to v2: recompute (fresh machine)"].endswith(" 7 task(s) ran")
    assert "branch switch with --download:" in proc.stdout
