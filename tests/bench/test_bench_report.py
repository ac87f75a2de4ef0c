"""Pure parts of the benchmark report: ratios, targets, tables; and the CLI's argument errors."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.report import add_ratios, evaluate_targets, markdown_table, row, text_table


def _transfer(client: str, role: str, seconds: float | None, figure: str = "W1 upload @20 ms",
              error: str | None = None, **extra) -> dict:
    return row("transfer", figure, client, seconds, [seconds] if seconds else [], error, role=role,
               nbytes=1000 * 65536, files=1000, rtt_ms=20, **extra)


def test_ratios_are_against_baseline_and_fastest_working_peer() -> None:
    rows = [_transfer("luisy_sync", "ours", 1.0), _transfer("sequential", "baseline", 30.0),
            _transfer("obstore", "peer", 1.5), _transfer("azure_aio", "peer", 2.0),
            _transfer("adlfs", "peer", None, error="RuntimeError: boom")]
    add_ratios(rows)
    ours, base, obstore, aio, adlfs = rows
    assert ours["x_baseline"] == 30.0 and ours["x_best_peer"] == 1.5
    assert ours["best_peer"] == "obstore"
    assert base["x_baseline"] == 1.0 and obstore["x_best_peer"] == 1.0
    assert aio["x_best_peer"] == 0.75
    assert adlfs["x_baseline"] is None and adlfs["x_best_peer"] is None


def test_targets_judge_w1_and_w3_at_the_given_rtt() -> None:
    rows = [_transfer("luisy_sync", "ours", 1.0), _transfer("sequential", "baseline", 30.0),
            _transfer("obstore", "peer", 1.1),
            _transfer("luisy_sync", "ours", 2.0, figure="W3 upload @20 ms", peak_rss_mb=350.0),
            _transfer("obstore", "peer", 1.0, figure="W3 upload @20 ms", peak_rss_mb=90.0)]
    add_ratios(rows)
    targets = {t["target"]: t for t in evaluate_targets(rows, quick=False, rtt=20)}
    assert targets["W1 upload @20 ms >= 25x baseline"]["met"] is True
    assert targets["W1 upload @20 ms >= 1.2x best peer"]["met"] is False
    assert targets["W3 upload @20 ms >= best peer's throughput"]["met"] is False
    assert targets["W3 upload peak RSS <= 300 MB"]["met"] is False
    assert targets["W3 upload peak RSS <= 300 MB"]["measured"] == "350 MB"
    assert not any("download" in t for t in targets)  # not run: not listed


def test_small_file_targets_only_judged_at_10k_files() -> None:
    rows = [row("recheck", "re-check", "luisy_sync scan, warm stat cache", 0.1, [0.1], None,
                role="ours", files=10_000),
            row("noop", "no-op @20 ms", "luisy_sync push", 0.5, [0.5], None, role="ours",
                files=1_000, rtt_ms=20)]
    add_ratios(rows)
    targets = evaluate_targets(rows, quick=False, rtt=20)
    assert [t["met"] for t in targets] == [True, None]
    assert targets[1]["note"] == "quick sizes: not judged"


def test_tables_show_errors_and_rates() -> None:
    rows = [_transfer("luisy_sync", "ours", 2.0), _transfer("rclone", "peer", None, error="x | y")]
    add_ratios(rows)
    md = markdown_table(rows)
    assert "32.8 MB/s" in md and "x / y" in md
    text = text_table(rows)
    assert text.splitlines()[0].startswith("figure")
    assert "rclone" in text and "x / y" in text


def test_cli_rejects_unknown_sections_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "W9"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown section(s) W9" in proc.stderr
    assert "Traceback" not in proc.stderr
