"""The scale section's process timing (benchmarks.scale.timed_process)."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks import scale


@pytest.mark.skipif(scale.GNU_TIME is None, reason="GNU time (/usr/bin/time) is not installed")
def test_peak_rss_is_the_commands_own_not_its_parents() -> None:
    """A command started from a big process must not report that process's memory
    (``wait4`` counts what the child shared with it before ``exec``)."""
    ballast = bytearray(150 << 20)
    for i in range(0, len(ballast), 4096):  # make it resident
        ballast[i] = 1
    small = scale.timed_process(["true"], dict(os.environ))
    grown = scale.timed_process([sys.executable, "-c", "x = bytearray(80 << 20)"], dict(os.environ))
    failed = scale.timed_process(["false"], dict(os.environ))
    del ballast
    assert small["error"] is None and small["rss_mb"] < 20
    assert grown["error"] is None and 80 < grown["rss_mb"] < 150
    assert failed["seconds"] is None and failed["error"] == "exit 1: no output" and failed["rss_mb"] < 20
