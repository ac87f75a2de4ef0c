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
    assert targets["W1 upload @20 ms >= 1.0x best peer"]["met"] is True
    assert targets["W1 upload @20 ms within 1.2x of the server ceiling"]["met"] is True
    assert targets["W3 upload @20 ms >= 1.0x best peer"]["met"] is False
    assert targets["W3 upload @20 ms peak RSS <= 300 MB"]["met"] is False
    assert targets["W3 upload @20 ms peak RSS <= 300 MB"]["measured"] == "350 MB"
    assert not any("download" in t for t in targets)  # not run: not listed


def test_cpu_per_file_per_gib_and_the_server_ceiling() -> None:
    rows = [_transfer("luisy_sync", "ours", 2.0, cpu_s=1.0), _transfer("obstore", "peer", 1.6, cpu_s=0.8),
            _transfer("rclone", "peer", None, error="boom", cpu_s=None)]
    add_ratios(rows)
    ours, obstore, rclone = rows
    assert ours["cpu_ms_per_file"] == 1.0 and abs(ours["cpu_s_per_gib"] - 1.0 / (65536000 / 2 ** 30)) < 1e-9
    assert ours["ceiling_s"] == obstore["ceiling_s"] == 1.6 and ours["x_ceiling"] == 0.8
    assert obstore["x_ceiling"] == 1.0 and rclone["x_ceiling"] is None and rclone["cpu_ms_per_file"] is None
    targets = {t["target"]: t for t in evaluate_targets(rows, quick=False, rtt=20)}
    lowest = targets["W1 upload @20 ms: lowest client CPU per file"]
    assert lowest["met"] is False and "obstore" in lowest["measured"]
    assert targets["W1 upload @20 ms within 1.2x of the server ceiling"]["met"] is False
    header = text_table(rows).splitlines()[0]
    for column in ("x ceiling", "CPU s", "CPU ms/file", "CPU s/GiB", "peak RSS MB"):
        assert column in header


def _scale(client: str, op: str, files: int, seconds: float, store: str = "local", **extra) -> dict:
    return row("scale", f"scale {files} {op} ({store})", client, seconds, [seconds], None,
               role="ours" if client == "luisy_sync" else "peer", files=files, nbytes=files * 4096,
               op=op, store=store, **extra)


def test_scale_and_throttle_targets() -> None:
    rows = [_scale("luisy_sync", "push", 10_000, 2.0), _scale("luisy_sync", "push", 100_000, 25.0),
            _scale("rclone copy --transfers 32", "push", 100_000, 11.0),
            _scale("luisy_sync", "no-op push", 100_000, 2.5),
            _scale("luisy_sync", "push", 1, 9.0, peak_rss_mb=120.0),
            row("throttle", "throttle W1 upload", "luisy_sync adaptive (cap 32)", 3.0, [3.0], None, role="ours",
                files=1000, throttled=12),
            row("throttle", "throttle W1 upload", "luisy_sync fixed 8", 2.5, [2.5], None, role="peer", files=1000)]
    add_ratios(rows)
    targets = {t["target"]: t for t in evaluate_targets(rows, quick=False, rtt=20)}
    growth = targets["scale push (local): time per file 10000 -> 100000 files <= 1.5x"]
    assert growth["met"] is True and growth["measured"] == "1.25x"
    assert targets["scale 100000 files push (local) within 2x of rclone copy"]["met"] is False
    assert targets["no-op push of 100000 files (local) <= 3 s"]["met"] is True
    assert targets["memory grows with files, not bytes: peak RSS of the 1-file rows <= 300 MB"]["met"] is True
    throttled = next(t for t in targets.values() if t["target"].startswith("throttle W1 upload"))
    assert throttled["met"] is True and "12 throttled" in throttled["measured"]


def test_small_file_targets_only_judged_at_10k_files() -> None:
    rows = [row("recheck", "re-check", "luisy_sync scan, warm stat cache", 0.1, [0.1], None,
                role="ours", files=10_000),
            row("noop", "no-op @20 ms", "luisy_sync push", 0.5, [0.5], None, role="ours",
                files=1_000, rtt_ms=20)]
    add_ratios(rows)
    targets = evaluate_targets(rows, quick=False, rtt=20)
    assert [t["met"] for t in targets] == [True, None]
    assert targets[1]["note"] == "quick sizes: not judged"


def test_the_re_check_target_has_no_listing_note() -> None:
    rows = [row("recheck", "re-check", "luisy_sync scan, warm stat cache", 0.1, [0.1], None,
                role="ours", files=10_000),
            row("recheck", "re-check", "luisy_sync scan, no cache (re-hash)", 0.9, [0.9], None,
                role="baseline", files=10_000)]
    add_ratios(rows)
    [target] = evaluate_targets(rows, quick=False, rtt=20)
    assert target["met"] is True and target["note"] == ""


def test_the_no_op_target_names_the_listing_floor() -> None:
    figure = "no-op push of 10000 up-to-date files @20 ms"
    rows = [row("noop", figure, "luisy_sync push", 1.7, [1.7], None, role="ours", files=10_000, rtt_ms=20),
            row("noop", figure, "List Blobs alone (luisy_sync store.list)", 1.25, [1.25], None,
                role="baseline", files=10_000, rtt_ms=20)]
    add_ratios(rows)
    [target] = evaluate_targets(rows, quick=False, rtt=20)
    assert target["met"] is False
    assert target["note"] == "listing the container alone: 1.250 s"
    assert rows[0]["x_ceiling"] == 1.25 / 1.7


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
