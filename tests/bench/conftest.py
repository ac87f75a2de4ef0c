"""Fixtures for the benchmark-suite tests: a factory of fault proxies."""

from __future__ import annotations

import pytest

from benchmarks.proxy import proxy_pool


@pytest.fixture
def fault_proxy():
    """``fault_proxy(target_port, delay_ms=..., faults=..., seed=...)`` -> a running proxy."""
    with proxy_pool() as start:
        yield start
