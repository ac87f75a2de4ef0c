"""Smoke test: ``python -m benchmarks --quick`` completes and writes its report (no speed asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks.azurite import azurite_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_run_completes_and_writes_results(tmp_path) -> None:
    if azurite_binary() is None:
        pytest.skip("azurite-blob not installed")
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=840)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "latest.json").read_text())
    groups = {r["group"] for r in results["rows"]}
    assert groups == {"transfer", "throttle", "hash", "recheck", "noop", "scale", "codehash", "branch"}
    branch = [r for r in results["rows"] if r["group"] == "branch"]
    assert all(r["error"] is None and r["seconds"] > 0 for r in branch), branch
    assert {r["role"]: r["tasks_run"] for r in branch} == {"ours": 0, "baseline": 7}  # the switch runs nothing
    figures = {r["figure"] for r in results["rows"] if r["group"] == "transfer"}
    assert figures == {f"{w} {op} @{rtt} ms" for w in ("W1", "W2", "W3")
                       for op in ("upload", "download") for rtt in (0, 20)}
    clients = {r["client"] for r in results["rows"] if r["group"] == "transfer"}
    assert {"luisy_sync", "sequential", "azure_aio", "obstore"} <= clients
    baseline = [r for r in results["rows"] if r["client"] == "sequential"]
    assert baseline and all(r["error"] is None and r["seconds"] > 0 for r in baseline)
    assert all(r["peak_rss_mb"] and r["cpu_s"] is not None for r in baseline)
    ours = [r for r in results["rows"] if r["client"] == "luisy_sync" and r["group"] in ("transfer", "scale")]
    assert ours and all(r["error"] is None and r["cpu_ms_per_file"] is not None for r in ours), ours
    throttled = [r for r in results["rows"] if r["group"] == "throttle" and r["role"] == "ours"]
    assert throttled and all(r["error"] is None and r["throttled"] is not None for r in throttled)
    assert results["targets"]
    md = (out / "latest.md").read_text()
    assert "## Targets" in md and "| figure | client |" in md
    assert "W1 upload @20 ms" in proc.stdout  # the table is printed
    assert "Eby8vdM02x" not in proc.stdout + proc.stderr + md  # the (public) dev key never shows
