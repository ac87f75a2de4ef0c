"""Results: rows, ratios against the baseline and the best peer, targets, JSON/markdown/PNG.

A row is a plain dict: ``group`` (transfer, hash, recheck, noop, codehash), ``figure``
(what was measured: rows with the same figure are compared), ``client``, ``role``
(ours / baseline / peer), ``seconds`` (min over the repetitions, None on error),
``times``, ``error`` and optional ``bytes``, ``files``, ``rtt_ms``, ``peak_rss_mb``.
Ratios are speed-ups: ``x_baseline = baseline seconds / seconds`` (above 1: faster
than the baseline) and ``x_best_peer = fastest peer's seconds / seconds``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from benchmarks.clients import OURS

MB = 1_000_000


def row(group: str, figure: str, client: str, seconds: float | None, times: list[float],
        error: str | None, *, role: str, nbytes: int | None = None, files: int | None = None,
        rtt_ms: int | None = None, unit: str = "files", **extra: Any) -> dict:
    return {"group": group, "figure": figure, "client": client, "role": role,
            "seconds": seconds, "times": [round(t, 6) for t in times], "error": error,
            "bytes": nbytes, "files": files, "unit": unit, "rtt_ms": rtt_ms, **extra}


def add_ratios(rows: list[dict]) -> None:
    """Fill ``x_baseline``, ``x_best_peer`` and ``best_peer`` on every row, per figure."""
    by_figure: dict[str, list[dict]] = {}
    for r in rows:
        by_figure.setdefault(r["figure"], []).append(r)
    for group in by_figure.values():
        ok = [r for r in group if r["seconds"]]
        base = next((r for r in ok if r["role"] == "baseline"), None)
        peers = [r for r in ok if r["role"] == "peer"]
        best = min(peers, key=lambda r: r["seconds"]) if peers else None
        for r in group:
            good = bool(r["seconds"])
            r["x_baseline"] = base["seconds"] / r["seconds"] if good and base else None
            r["x_best_peer"] = best["seconds"] / r["seconds"] if good and best else None
            r["best_peer"] = best["client"] if best else None


def _ours(rows: list[dict], figure: str) -> dict | None:
    return next((r for r in rows if r["figure"] == figure and r["role"] == "ours"), None)


def evaluate_targets(rows: list[dict], quick: bool, rtt: int) -> list[dict]:
    """The issue's targets: target / measured / met? (met is None when not measurable)."""
    out: list[dict] = []
    groups = {r["figure"].split(" @")[0] for r in rows} | {r["group"] for r in rows}

    def add(target: str, measured: str, met: bool | None, note: str = "") -> None:
        out.append({"target": target, "measured": measured, "met": met, "note": note})

    for op in ("upload", "download"):
        r = _ours(rows, f"W1 {op} @{rtt} ms")
        if f"W1 {op}" not in groups:
            pass
        elif r is None or r["seconds"] is None:
            add(f"W1 {op} @{rtt} ms >= 25x baseline and >= 1.2x best peer",
                r["error"] if r else "not run", None)
        else:
            xb, xp = r["x_baseline"], r["x_best_peer"]
            add(f"W1 {op} @{rtt} ms >= 25x baseline", _x(xb), xb >= 25 if xb else None)
            add(f"W1 {op} @{rtt} ms >= 1.2x best peer", f"{_x(xp)} vs {r['best_peer']}",
                xp >= 1.2 if xp else None)
        r = _ours(rows, f"W3 {op} @{rtt} ms")
        if f"W3 {op}" not in groups:
            pass
        elif r is None or r["seconds"] is None:
            add(f"W3 {op} @{rtt} ms >= best peer, peak RSS <= 300 MB", r["error"] if r else "not run", None)
        else:
            xp, rss = r["x_best_peer"], r.get("peak_rss_mb")
            add(f"W3 {op} @{rtt} ms >= best peer's throughput", f"{_x(xp)} vs {r['best_peer']}",
                xp >= 1.0 if xp else None)
            add(f"W3 {op} peak RSS <= 300 MB", f"{rss:.0f} MB" if rss else "n/a",
                rss <= 300 if rss else None)
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
    for group, limit, what, only_rtt in (("recheck", 0.2, "re-check of 10k unchanged files", None),
                                         ("noop", 1.0, "no-op sync of 10k files", rtt)):
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
            add(label, f"{r['seconds']:.3f} s", r["seconds"] <= limit)
    if quick:
        for t in out:
            t["note"] = t["note"] or "quick sizes: indicative only"
    return out


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
    return [r["figure"], r["client"], secs, rate, _x(r.get("x_baseline")) if r["seconds"] else "",
            _x(r.get("x_best_peer")) if r["seconds"] else "", rss, err]


HEADER = ["figure", "client", "seconds (min)", "rate", "x baseline", "x best peer", "peak RSS MB", "error"]


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
