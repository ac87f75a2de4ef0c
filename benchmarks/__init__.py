"""Benchmarks for luisy_sync and luisy: run with ``python -m benchmarks``."""
