"""Results: rows, ratios against the baseline and the best peer, targets, JSON/markdown/PNG.

A row is a plain dict: ``group`` (transfer, hash, recheck, noop, codehash), ``figure``
(what was measured: rows with the same figure are compared), ``client``, ``role``
(ours / baseline / peer), ``seconds`` (min over the repetitions, None on error),
``times``, ``error`` and optional ``bytes``, ``files``, ``rtt_ms``, ``peak_rss_mb``,
``cpu_s`` (user + system CPU seconds of the client's process, children included).
Ratios are speed-ups: ``x_baseline = baseline seconds / seconds`` (above 1: faster
than the baseline) and ``x_best_peer = fastest peer's seconds / seconds``. Derived per
row: ``cpu_ms_per_file``, ``cpu_s_per_gib``, and ``ceiling_s`` (the best time any
client reached in the same figure: what the server allowed in this run) with
``x_ceiling = ceiling_s / seconds`` (1.0: this client reached the ceiling).
"""

from __future__ import annotations

import json
import os
from typing import Any

from benchmarks.clients import OURS

MB = 1_000_000
GiB = 2 ** 30


def row(group: str, figure: str, client: str, seconds: float | None, times: list[float],
        error: str | None, *, role: str, nbytes: int | None = None, files: int | None = None,
        rtt_ms: int | None = None, unit: str = "files", **extra: Any) -> dict:
    return {"group": group, "figure": figure, "client": client, "role": role,
            "seconds": seconds, "times": [round(t, 6) for t in times], "error": error,
            "bytes": nbytes, "files": files, "unit": unit, "rtt_ms": rtt_ms, **extra}


def add_ratios(rows: list[dict]) -> None:
    """Fill ``x_baseline``, ``x_best_peer``, ``best_peer``, the ceiling and the CPU
    figures on every row, per figure."""
    by_figure: dict[str, list[dict]] = {}
    for r in rows:
        by_figure.setdefault(r["figure"], []).append(r)
    for group in by_figure.values():
        ok = [r for r in group if r["seconds"]]
        base = next((r for r in ok if r["role"] == "baseline"), None)
        peers = [r for r in ok if r["role"] == "peer"]
        best = min(peers, key=lambda r: r["seconds"]) if peers else None
        ceiling = min((r["seconds"] for r in ok), default=None)
        for r in group:
            good = bool(r["seconds"])
            r["x_baseline"] = base["seconds"] / r["seconds"] if good and base else None
            r["x_best_peer"] = best["seconds"] / r["seconds"] if good and best else None
            r["best_peer"] = best["client"] if best else None
            r["ceiling_s"] = ceiling if len(ok) > 1 else None
            r["x_ceiling"] = ceiling / r["seconds"] if good and r["ceiling_s"] else None
            cpu = r.get("cpu_s")
            r["cpu_ms_per_file"] = cpu * 1000 / r["files"] if cpu is not None and r.get("files") else None
            r["cpu_s_per_gib"] = cpu / (r["bytes"] / GiB) if cpu is not None and r.get("bytes") else None


def _figure_row(rows: list[dict], figure: str, role: str = "ours") -> dict | None:
    return next((r for r in rows if r["figure"] == figure and r["role"] == role), None)


def evaluate_targets(rows: list[dict], quick: bool, rtt: int) -> list[dict]:
    """The issue's targets: target / measured / met? (met is None when not measurable)."""
    out: list[dict] = []
    groups = {r["figure"].split(" @")[0] for r in rows} | {r["group"] for r in rows}

    def add(target: str, measured: str, met: bool | None, note: str = "") -> None:
        out.append({"target": target, "measured": measured, "met": met, "note": note})

    for wl in ("W1", "W2", "W3"):
        for op in ("upload", "download"):
            if f"{wl} {op}" not in groups:
                continue
            figure = f"{wl} {op} @{rtt} ms"
            r = _figure_row(rows, figure)
            if r is None or r["seconds"] is None:
                add(f"{figure} >= 1.0x best peer", r["error"] if r else "not run", None)
                continue
            xp = r["x_best_peer"]
            add(f"{figure} >= 1.0x best peer", f"{_x(xp)} vs {r['best_peer']}", xp >= 1.0 if xp else None)
            _lowest_cpu(add, rows, figure, r)
            if wl == "W1":
                xc = r.get("x_ceiling")
                add(f"{figure} within 1.2x of the server ceiling", f"{_x(xc)} of {r.get('ceiling_s') or 0:.3f} s",
                    xc >= 1 / 1.2 if xc else None)
            if wl == "W3":
                rss = r.get("peak_rss_mb")
                add(f"{figure} peak RSS <= 300 MB", f"{rss:.0f} MB" if rss else "n/a",
                    rss <= 300 if rss else None)
    _throttle_targets(add, rows)
    _scale_targets(add, rows)
    hashes = [r for r in rows if r["group"] == "hash"]
    ours = next((r for r in hashes if r["role"] == "ours" and r["seconds"]), None)
    ref = next((r for r in hashes if r["client"].startswith("xxhsum -H3") and r["seconds"]), None)
    if not hashes:
        pass
    elif ours and ref:
        ratio = ref["seconds"] / ours["seconds"]
        add("hashing >= 0.9x xxhsum -H3", _x(ratio), ratio >= 0.9)
    else:
        add("hashing >= 0.9x xxhsum -H3", "not measured", None)
    # (group, limit, what, judged rtt, what the figure's baseline row is called in the note)
    for group, limit, what, only_rtt, baseline_is in (
            ("recheck", 0.2, "re-check of 10k unchanged files", None, None),
            ("noop", 1.0, "no-op sync of 10k files", rtt, "listing the container alone")):
        r = next((r for r in rows if r["group"] == group and r["role"] == "ours"
                  and (only_rtt is None or r["rtt_ms"] == only_rtt)), None)
        label = f"{what} <= {limit:g} s" + (f" (@{only_rtt} ms)" if only_rtt is not None else "")
        if group not in groups:
            continue
        if r is None or r["seconds"] is None:
            add(label, r["error"] if r else "not run", None)
        elif r["files"] != 10_000:
            add(label, f"{r['seconds']:.3f} s for {r['files']} files", None, "quick sizes: not judged")
        else:
            base = _figure_row(rows, r["figure"], "baseline") if baseline_is else None
            add(label, f"{r['seconds']:.3f} s", r["seconds"] <= limit,
                f"{baseline_is}: {base['seconds']:.3f} s" if base and base["seconds"] else "")
    if quick:
        for t in out:
            t["note"] = t["note"] or "quick sizes: indicative only"
    return out


def _lowest_cpu(add, rows: list[dict], figure: str, ours: dict) -> None:
    """Ours has the lowest CPU per file and per GiB of every client in ``figure``."""
    others = [r for r in rows if r["figure"] == figure and r is not ours and r.get("cpu_s") is not None
              and r["seconds"]]
    if ours.get("cpu_s") is None or not others:
        return
    best = min(others, key=lambda r: r["cpu_s"])
    per = "file" if figure.startswith("W1") else "GiB"
    key = "cpu_ms_per_file" if per == "file" else "cpu_s_per_gib"
    add(f"{figure}: lowest client CPU per {per}",
        f"{ours[key]:.3f} vs {best['client']} {best[key]:.3f}", ours["cpu_s"] <= best["cpu_s"])


def _throttle_targets(add, rows: list[dict]) -> None:
    for r in rows:
        if r["group"] != "throttle" or r["role"] != "ours":
            continue
        label = f"{r['figure']}: adaptive within 1.3x of the best fixed concurrency, 0 failed files"
        if r["seconds"] is None:
            add(label, r["error"] or "not run", False if r["error"] else None)
        else:
            xp = r["x_best_peer"]
            add(label, f"{_x(xp)} of {r['best_peer']}, {r.get('throttled')} throttled",
                xp >= 1 / 1.3 if xp else None)


def _scale_rows(rows: list[dict], op: str, store: str, client: str = OURS) -> list[dict]:
    return sorted((r for r in rows if r["group"] == "scale" and r.get("op") == op and r.get("store") == store
                   and r["client"] == client and r["files"] and r["files"] > 1), key=lambda r: r["files"])


def _scale_targets(add, rows: list[dict]) -> None:
    """Linear growth 10k -> 100k, local push/pull within 2x rclone, no-op push, memory vs bytes."""
    for store in ("local", "azurite"):
        for op in ("push", "pull"):
            sized = [r for r in _scale_rows(rows, op, store) if r["seconds"]]
            if len(sized) >= 2:
                small, large = sized[0], sized[-1]
                growth = (large["seconds"] / large["files"]) / (small["seconds"] / small["files"])
                add(f"scale {op} ({store}): time per file {small['files']} -> {large['files']} files <= 1.5x",
                    f"{growth:.2f}x", growth <= 1.5)
    largest = max((r["files"] for r in rows if r["group"] == "scale"), default=0)
    for op in ("push", "pull"):
        ours = next((r for r in _scale_rows(rows, op, "local") if r["files"] == largest), None)
        peer = next((r for r in _scale_rows(rows, op, "local", "rclone copy --transfers 32")
                     if r["files"] == largest), None)
        if ours and peer and ours["seconds"] and peer["seconds"]:
            ratio = ours["seconds"] / peer["seconds"]
            add(f"scale {largest} files {op} (local) within 2x of rclone copy", f"{ratio:.2f}x rclone's time",
                ratio <= 2.0)
    noop = next((r for r in _scale_rows(rows, "no-op push", "local") if r["files"] == largest), None)
    if noop and largest >= 100_000:
        add(f"no-op push of {largest} files (local) <= 3 s",
            f"{noop['seconds']:.2f} s" if noop["seconds"] else noop["error"],
            noop["seconds"] <= 3.0 if noop["seconds"] else False)
    big = [r for r in rows if r["group"] == "scale" and r["files"] == 1 and r["client"] == OURS]
    many = [r for r in rows if r["group"] == "scale" and r["files"] == largest and r["client"] == OURS]
    if big and many:
        worst = max((r.get("peak_rss_mb") or 0) for r in big)
        add("memory grows with files, not bytes: peak RSS of the 1-file rows <= 300 MB", f"{worst:.0f} MB",
            worst <= 300)


def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v else "n/a"


def _fmt_row(r: dict) -> list[str]:
    secs = f"{r['seconds']:.4f}" if r["seconds"] and r["seconds"] < 0.1 else (
        f"{r['seconds']:.3f}" if r["seconds"] else "—")
    rate = ""
    if r["seconds"] and r.get("bytes"):
        rate = f"{r['bytes'] / r['seconds'] / MB:.1f} MB/s"
    elif r["seconds"] and r.get("files"):
        rate = f"{r['files'] / r['seconds']:.0f} {r.get('unit', 'files')}/s"
    rss = f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else ""
    err = (r["error"] or "").replace("|", "/")
    good = bool(r["seconds"])
    return [r["figure"], r["client"], secs, rate, _x(r.get("x_baseline")) if good else "",
            _x(r.get("x_best_peer")) if good else "", _x(r.get("x_ceiling")) if good else "",
            _num(r.get("cpu_s"), 2), _num(r.get("cpu_ms_per_file"), 3), _num(r.get("cpu_s_per_gib"), 2),
            rss, "" if r.get("throttled") is None else str(r["throttled"]), err]


def _num(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


HEADER = ["figure", "client", "seconds (min)", "rate", "x baseline", "x best peer", "x ceiling",
          "CPU s", "CPU ms/file", "CPU s/GiB", "peak RSS MB", "throttled", "error"]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_fmt_row(r)) + " |" for r in rows]
    return "\n".join(lines)


def text_table(rows: list[dict]) -> str:
    cells = [HEADER] + [_fmt_row(r) for r in rows]
    widths = [min(60, max(len(c[i]) for c in cells)) for i in range(len(HEADER))]
    return "\n".join("  ".join(c[i][:widths[i]].ljust(widths[i]) for i in range(len(HEADER))).rstrip()
                     for c in cells)


def targets_markdown(targets: list[dict]) -> str:
    lines = ["| target | measured | met? | note |", "|---|---|---|---|"]
    for t in targets:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['measured']} | {met} | {t['note']} |")
    return "\n".join(lines)


def write(results: dict, out_dir: str) -> dict[str, str]:
    """Write latest.json, latest.md and (with matplotlib) latest.png; returns what was written."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "latest.json"), "md": os.path.join(out_dir, "latest.md")}
    with open(paths["json"], "w") as fh:
        json.dump(results, fh, indent=1)
    chart_note = chart(results["rows"], os.path.join(out_dir, "latest.png"))
    if chart_note is None:
        paths["png"] = os.path.join(out_dir, "latest.png")
    with open(paths["md"], "w") as fh:
        fh.write(render_markdown(results, chart_note))
    return paths


def render_markdown(results: dict, chart_note: str | None) -> str:
    meta = results["meta"]
    parts = [f"# luisy_sync benchmark results{' (quick)' if meta['quick'] else ''}", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
             f"Date: {meta['date']}, {meta['reps']} repetition(s) per figure (min reported), "
             f"run took {meta['elapsed_s']:.0f} s", "",
             "## Targets", "", targets_markdown(results["targets"]), "",
             "## All figures", "", markdown_table(results["rows"]), ""]
    parts += ["![throughput chart](latest.png)" if chart_note is None else f"_Chart: {chart_note}_", ""]
    if meta.get("notes"):
        parts += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(parts)


def chart(rows: list[dict], path: str) -> str | None:
    """A grouped bar chart of transfer throughput; returns why it was skipped, or None."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "skipped: matplotlib is not installed (pip install matplotlib)"
    transfers = [r for r in rows if r["group"] == "transfer"]
    figures = list(dict.fromkeys(r["figure"] for r in transfers))
    clients = list(dict.fromkeys(r["client"] for r in transfers))
    if not figures:
        return "skipped: no transfer figures in this run"
    fig, ax = plt.subplots(figsize=(max(8, len(figures) * 1.1), 5))
    width = 0.8 / max(1, len(clients))
    for i, client in enumerate(clients):
        values = []
        for f in figures:
            r = next((r for r in transfers if r["figure"] == f and r["client"] == client), None)
            ok = r and r["seconds"] and r["bytes"]
            values.append(r["bytes"] / r["seconds"] / MB if ok else float("nan"))
        xs = [j + (i - (len(clients) - 1) / 2) * width for j in range(len(figures))]
        ax.bar(xs, values, width, label=client, edgecolor="black" if client == OURS else None)
    ax.set_xticks(range(len(figures)), figures, rotation=45, ha="right")
    ax.set_ylabel("MB/s (log scale)")
    ax.set_yscale("log")
    ax.set_title("Transfer throughput through the latency proxy (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
