"""Runnable example pipelines (they generate their own synthetic raw data)."""
