"""The throttling figure: a server that sheds load, adaptive concurrency against fixed ones.

The proxy (``throttle_over=N``) answers 503 ServerBusy with ``Retry-After: 1`` to every
request beyond N in flight, at 20 ms RTT. luisy_sync uploads and downloads W1 with its
adaptive request budget (on by default, ``concurrency=32`` as its cap) and with each
fixed concurrency (``adaptive=False``): 4, 8, 16, 32, all variants in turn in each of
``--reps`` repetitions; a row is its minimum, like every other figure. Every (variant,
op) gets a fresh proxy, so its row carries the count of throttled requests of its best
repetition; a variant with a failed file in any repetition is an error row. The fixed
rows are the "peers": ``x best peer`` of the adaptive row is the best fixed time over
the adaptive time.
"""

from __future__ import annotations

import os
import uuid

from benchmarks.processes import ProxyProcess, Worker, remove_tree
from benchmarks.report import row
from benchmarks.workloads import Workload

THROTTLE_OVER = 8
FIXED = (4, 8, 16, 32)
RTT_MS = 20
ADAPTIVE = "luisy_sync adaptive (cap 32)"


def _container() -> str:
    return "t" + uuid.uuid4().hex[:22]


def throttle(azurite_port: int, drop, wl: Workload, src: str, tmp: str, reps: int, timeout: float,
             log) -> list[dict]:
    """Rows of the throttling figure (see the module docstring)."""
    variants = [(ADAPTIVE, 32, {})] + [(f"luisy_sync fixed {c}", c, {"adaptive": False}) for c in FIXED]
    stats = {(name, op): {"times": [], "cpus": [], "throttled": [], "error": None}
             for name, _, _ in variants for op in ("upload", "download")}
    for rep in range(reps):
        for name, concurrency, options in variants:
            container, dest = _container(), os.path.join(tmp, "throttle-dl")
            worker = Worker()
            try:
                for op in ("upload", "download"):
                    st = stats[(name, op)]
                    proxy = ProxyProcess(azurite_port, delay_ms=RTT_MS / 2, throttle_over=THROTTLE_OVER)
                    job = {"client": "luisy_sync", "endpoint": proxy.endpoint, "container": container,
                           "concurrency": concurrency, "options": options, "op": op,
                           "dir": src if op == "upload" else dest}
                    if op == "download":
                        job["verify"] = src
                    try:
                        res = worker.run(job, timeout)
                    finally:
                        counters = proxy.stop()
                    if res["ok"]:
                        st["times"].append(res["seconds"])
                        st["cpus"].append(res.get("cpu_s"))
                        st["throttled"].append(counters.get("faults", {}).get("throttled", 0))
                    else:
                        st["error"] = res["error"]
                        if op == "upload":
                            stats[(name, "download")]["error"] = "skipped: the upload failed"
                            break
            finally:
                worker.close()
                drop(container)
                remove_tree(dest)
        log(f"  throttle rep {rep + 1}/{reps} done")
    rows = []
    for (name, op), st in stats.items():
        best = min(range(len(st["times"])), key=st["times"].__getitem__) if st["times"] else None
        ok = best is not None and not st["error"]
        rows.append(row("throttle", f"throttle {wl.name} {op} (503 over {THROTTLE_OVER} in flight)", name,
                        st["times"][best] if ok else None, st["times"], st["error"],
                        role="ours" if name == ADAPTIVE else "peer", nbytes=wl.total_bytes, files=wl.count,
                        rtt_ms=RTT_MS, op=op, workload=wl.name,
                        cpu_s=st["cpus"][best] if ok else None,
                        throttled=st["throttled"][best] if ok else None))
    return rows
