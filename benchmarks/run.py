"""The benchmark run: Azurite + proxies + workloads + clients + figures -> results dict."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

from benchmarks import branch_switch, figures, scale, throttle, workloads
from benchmarks.azurite import FreshAzurite
from benchmarks.clients import BASELINE, CLIENT_MODULES, OURS
from benchmarks.processes import ProxyProcess, Worker, remove_tree
from benchmarks.report import add_ratios, evaluate_targets, row

SECTIONS = ("W1", "W2", "W3", "throttle", "hash", "recheck", "noop", "scale", "codehash", "branch",
            "scale-azurite-100k")
ON_REQUEST = {"scale-azurite-100k"}
"""Sections that run only when ``--only`` names them (too long for the default run)."""


@dataclass
class Options:
    quick: bool = False
    reps: int = 3
    only: set[str] | None = None  # sections (SECTIONS) to run; None: all
    clients: list[str] = field(default_factory=lambda: list(CLIENT_MODULES))
    rtts: tuple[int, ...] = (0, 20)
    concurrency: int = 32
    out_dir: str = os.path.join(os.path.dirname(__file__), "results")
    command: str = "python -m benchmarks"
    download_dir: str | None = None  # where downloads land; None: RAM_DIR when it has room


    def wants(self, section: str) -> bool:
        if section in ON_REQUEST:
            return self.only is not None and section in self.only
        return self.only is None or section in self.only

    @property
    def size(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def job_timeout(self) -> float:
        return 180.0 if self.quick else 3600.0


RAM_DIR = "/dev/shm"
RAM_DIR_ROOM = 4 << 30
"""Downloads land in a RAM-backed directory when it has this much room (see ``download_root``)."""


def download_root(opts: Options, tmp: str) -> tuple[str, str]:
    """The directory the transfer figures download into, and a note saying which.

    A download into ext4 right after the previous job removed its tree pays for that
    removal: on a file system without a journal, ext4 skips recently deleted inodes
    when it allocates new ones, and after a few thousand deletes one file creation
    costs several times its usual kernel CPU (measured here: 1000 files after 30k
    deletes, 0.07 -> 0.45 s system CPU; the same into tmpfs, 0.08 s). Which client
    pays depended on who ran before it, so downloads go to tmpfs when there is one.
    """
    if opts.download_dir:
        return opts.download_dir, f"downloads in {opts.download_dir} (--download-dir)"
    try:
        st = os.statvfs(RAM_DIR)
        if st.f_bavail * st.f_frsize >= RAM_DIR_ROOM and os.access(RAM_DIR, os.W_OK):
            return (tempfile.mkdtemp(prefix="luisy-bench-dl-", dir=RAM_DIR),
                    f"downloads in {RAM_DIR} (tmpfs), so no client pays for the previous job's deletes")
    except OSError:
        pass
    return tmp, "downloads in the temp directory on disk (no tmpfs with room)"


def _role(client: str) -> str:
    return "ours" if client == OURS else "baseline" if client == BASELINE else "peer"


def _drop_container(endpoint: str, container: str) -> None:
    from azure.storage.blob import BlobServiceClient

    from benchmarks.clients import Target

    try:
        with BlobServiceClient.from_connection_string(Target(endpoint, container).connection_string) as svc:
            svc.delete_container(container)
    except Exception:  # noqa: BLE001 - cleanup; Azurite's data dir is removed at the end
        pass


class TransferBench:
    """Runs the W1/W2/W3 upload and download figures for every client.

    Each job (one client's upload and then its download) starts on an empty Azurite,
    started afresh on the same port behind the same proxies. On one long-lived emulator
    a job's time depended on how much the jobs before it had stored: W3 uploads of the
    same client took 1.4 s on a fresh emulator and 2.0-2.5 s once 3 GB had gone through
    it (extents are freed only by Azurite's 10-minute GC), and which client a slow phase
    hit was chance (the same client's three times spread 1.4-2.5 s). On a fresh emulator
    per job, five jobs of one client spread about 5%.
    """

    def __init__(self, opts: Options, server: FreshAzurite, endpoints: dict[int, str], downloads: str,
                 log) -> None:
        self.opts, self.server, self.endpoints, self.downloads, self.log = (opts, server, endpoints,
                                                                          downloads, log)
        self.workers: dict[str, Worker] = {}

    def _worker(self, client: str, fresh: bool) -> Worker:
        if fresh:
            return Worker()
        if client not in self.workers or self.workers[client].proc.poll() is not None:
            self.workers[client] = Worker()
        return self.workers[client]

    def close(self) -> None:
        for w in self.workers.values():
            w.close()

    def run_workload(self, wl: workloads.Workload, src: str) -> list[dict]:
        fresh = wl.name == "W3"  # each W3 job in its own process: its peak RSS is its own
        rows = []
        for rtt, endpoint in self.endpoints.items():
            stats = {(c, op): {"times": [], "cpus": [], "error": None, "rss": 0}
                     for c in self.opts.clients for op in ("upload", "download")}
            clients = self.opts.clients
            for rep in range(self.opts.reps):
                # each repetition starts with another client: none always runs right after the same one
                turn = rep % len(clients)
                for client in clients[turn:] + clients[:turn]:
                    self._one(client, wl, src, endpoint, fresh, stats)
                self.log(f"  {wl.name} @{rtt} ms rep {rep + 1}/{self.opts.reps} done")
            for (client, op), st in stats.items():
                rows.append(row("transfer", f"{wl.name} {op} @{rtt} ms", client,
                                min(st["times"]) if st["times"] and not st["error"] else None,
                                st["times"], st["error"], role=_role(client), nbytes=wl.total_bytes,
                                files=wl.count, rtt_ms=rtt, workload=wl.name, op=op,
                                cpu_s=min(st["cpus"]) if st["cpus"] and not st["error"] else None,
                                peak_rss_mb=st["rss"] / 1e6 if st["rss"] else None))
        return rows

    def _one(self, client: str, wl: workloads.Workload, src: str, endpoint: str, fresh: bool,
             stats: dict) -> None:
        up, down = stats[(client, "upload")], stats[(client, "download")]
        if up["error"]:
            return  # failed before: do not spend the time again
        container = "b" + uuid.uuid4().hex[:22]
        dest = os.path.join(self.downloads, container)
        timeout = self.opts.job_timeout
        job = {"client": client, "endpoint": endpoint, "container": container,
               "concurrency": self.opts.concurrency}
        self.server.renew()
        try:
            worker = self._worker(client, fresh)
            res = worker.run({**job, "op": "upload", "dir": src}, timeout)
            if fresh:
                worker.close()
            self._record(up, res)
            if not res["ok"]:
                down["error"] = down["error"] or "skipped: the upload failed"
                return
            worker = self._worker(client, fresh)
            res = worker.run({**job, "op": "download", "dir": dest, "verify": src}, timeout)
            if fresh:
                worker.close()
            self._record(down, res)
        finally:
            remove_tree(dest)

    @staticmethod
    def _record(st: dict, res: dict) -> None:
        if res["ok"]:
            st["times"].append(res["seconds"])
            if res.get("cpu_s") is not None:
                st["cpus"].append(res["cpu_s"])
            st["rss"] = max(st["rss"], (res.get("peak_rss_kib") or 0) * 1024)
        else:
            st["error"] = res["error"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        mem = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (f"{cpu}, {os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, Azurite (azurite-blob) on loopback")


def run(opts: Options, log=print) -> dict:
    """Run the selected figures and return ``{"meta", "rows", "targets"}``."""
    started = time.monotonic()
    notes: list[str] = []
    rows: list[dict] = []
    tmp = tempfile.mkdtemp(prefix="luisy-bench-")
    azurite = FreshAzurite()
    proxies: dict[int, ProxyProcess] = {}
    bench = None
    downloads, where = download_root(opts, tmp)
    notes.append(where)
    try:
        for rtt in opts.rtts:
            proxies[rtt] = ProxyProcess(azurite.port, delay_ms=rtt / 2)
        endpoints = {rtt: p.endpoint for rtt, p in proxies.items()}
        bench = TransferBench(opts, azurite, endpoints, downloads, log)
        if opts.wants("throttle"):
            wl = workloads.workloads(opts.quick)["W1"]
            log(f"throttle: {wl.label}, 503 over {throttle.THROTTLE_OVER} requests in flight")
            src = workloads.generate(tmp, wl)
            rows += throttle.throttle(azurite.port, lambda c: _drop_container(azurite.endpoint, c), wl, src,
                                      downloads, opts.reps, opts.job_timeout, log)
            remove_tree(src)
        transfers = {name: wl for name, wl in workloads.workloads(opts.quick).items() if opts.wants(name)}
        if transfers:
            notes.append("each transfer job (one client's upload and its download) ran on a freshly "
                         "started, empty Azurite")
        for name, wl in transfers.items():
            log(f"{name}: {wl.label}, clients: {', '.join(opts.clients)}")
            src = workloads.generate(tmp, wl)
            rows += bench.run_workload(wl, src)
            remove_tree(src)
        if transfers:
            azurite.renew()  # the sections after them start on an empty emulator too
        if opts.wants("hash"):
            log("hash: file hashing throughput")
            count, size = workloads.HASH_SET[opts.size]
            paths = workloads.generate_hash_set(tmp, count, size)
            rows += figures.hashing(paths, opts.reps)
            remove_tree(os.path.dirname(paths[0]))
        if opts.wants("recheck") or opts.wants("noop"):
            small = workloads.generate_small(tmp, workloads.SMALL_FILES[opts.size])
            if opts.wants("recheck"):
                log("recheck: scan of unchanged files with a warm stat cache")
                rows += figures.recheck(small, opts.reps)
            if opts.wants("noop"):
                log("noop: push of up-to-date files")
                rows += figures.noop_sync(small, endpoints, opts.reps)
        if opts.wants("scale"):
            rows += scale.scale(tmp, opts.quick, endpoints.get(0, next(iter(endpoints.values()))), log,
                                None if opts.wants("scale-azurite-100k") else 10_000, opts.reps)
        if opts.wants("codehash"):
            log("codehash: code hashing of generated pipelines")
            rows += figures.codehash(workloads.PIPELINE_SIZES[opts.size], opts.reps)
        if opts.wants("branch"):
            log("branch: a branch switch with --download against a recompute")
            rows += branch_switch.figure(20_000 if opts.quick else 2_000_000, opts.reps)
    finally:
        if bench:
            bench.close()
        for rtt, proxy in proxies.items():
            stats = proxy.stop()
            if stats:
                notes.append(f"proxy @{rtt} ms RTT: {stats.get('connections', 0)} connections, "
                             f"{stats.get('bytes_up', 0) / 1e6:.0f} MB up, "
                             f"{stats.get('bytes_down', 0) / 1e6:.0f} MB down")
        azurite.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if downloads != tmp and not opts.download_dir:
            shutil.rmtree(downloads, ignore_errors=True)
    add_ratios(rows)
    judged_rtt = max(opts.rtts)
    meta = {"quick": opts.quick, "reps": opts.reps, "command": opts.command, "machine": machine(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "elapsed_s": time.monotonic() - started, "rtts_ms": list(opts.rtts),
            "concurrency": opts.concurrency, "python": sys.version.split()[0], "notes": notes}
    return {"meta": meta, "rows": rows, "targets": evaluate_targets(rows, opts.quick, judged_rtt)}
