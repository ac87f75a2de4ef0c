"""The cloud side of one luisy run: check the remote, plan, download before luigi,
upload after it, and report.

    sync = CloudRun.start(prepared, options, out)       # before anything changes
    plan = prepared.plan(sync.plan_entries(), download=..., upload=...)
    sync.download(plan)                                  # all at once, before luigi
    ... luigi runs (workers may fork; nothing is transferred inside it) ...
    sync.upload(recorded_hashes)                         # all at once, after luigi
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from luisy.cloud.api import bridge_call, download_refs, read_state, refresh_hashes, upload_keyed
from luisy.cloud.cloudhash import CloudState
from luisy.cloud.remote import CloudError, CloudSession, open_session
from luisy.cloud.transfers import SyncOutcome, plan_uploads, scan_outputs
from luisy.config import Config
from luisy_sync.report import format_bytes
from luisy_sync.transfer import DEFAULT_CONCURRENCY

if TYPE_CHECKING:
    from luisy.run import PreparedRun
    from luisy.runplan import RunPlan


@dataclass
class CloudOptions:
    """Cloud settings of a run. ``json_path``: write a JSON report there (``-`` = stdout)."""

    download: bool = False
    upload: bool = False
    remote: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    progress: bool = True
    json_path: str | None = None

    @property
    def active(self) -> bool:
        return self.download or self.upload


@dataclass
class CloudRun:
    """State of the cloud side of one run."""

    prepared: "PreparedRun"
    options: CloudOptions
    session: CloudSession
    state: CloudState
    out: Callable[[str], None] = print
    outcomes: dict[str, SyncOutcome] = field(default_factory=dict)
    predicted_uploads: dict[str, int | None] = field(default_factory=dict)
    predicted_held: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, prepared: "PreparedRun", options: CloudOptions,
              out: Callable[[str], None] = print) -> "CloudRun":
        """Resolve and check the remote and read the cloud hash files (CloudError if unusable)."""
        session = open_session(options.remote)
        out(f"luisy: cloud remote: {session.description}")
        exists = session.check(create=False)
        if not exists:
            problem = _uncreatable_local_root(session.store())
            if problem:
                raise CloudError(f"{problem}; nothing was run: fix LUISY_LOCAL_REMOTE / --remote")
        session.current_hashes.update(prepared.current)
        projects = prepared.graph.projects()
        state = read_state(projects, session=session) if exists else CloudState(container_exists=False)
        if not exists:
            out("luisy: the cloud container does not exist yet (nothing to download)")
        return cls(prepared, options, session, state, out)

    @property
    def is_dir(self) -> dict[str, bool]:
        return {ref.key: ref.is_dir for ref in self.prepared.graph.outputs.values() if ref}

    def plan_entries(self) -> dict[str, dict[str, Any]]:
        """Cloud entries for the planner: only those whose content can be downloaded verified."""
        return self.state.verifiable_entries(self.is_dir)

    def download_size(self, key: str) -> int:
        files = self.state.expected_files(key, self.is_dir.get(key, False)) or {}
        return sum(f.size for f in files.values())

    def predict_uploads(self, plan: "RunPlan") -> dict[str, int | None]:
        """Outputs the upload will push: existing ones whose hash or content differs
        (scanned now, size known) and ones the run makes whose cloud hash differs."""
        if not self.options.upload:
            return {}
        present = {k: (self.is_dir[k], self.prepared.current[k]) for k in plan.up_to_date
                   if k in self.prepared.current and k in self.is_dir}
        wd = Config().working_dir
        local = bridge_call(self.session, scan_outputs, wd, sorted(present))
        up = plan_uploads(present, local, self.state, replace=())  # these are not recomputed
        self.predicted_held = up.held
        sizes: dict[str, int | None] = {
            k: sum(local[p].size for p in up.content[k]) for k in up.keys}
        for key in plan.to_upload:
            sizes.setdefault(key, None)
        self.predicted_uploads = dict(sorted(sizes.items()))
        return self.predicted_uploads

    def plan_lines(self, plan: "RunPlan") -> list[str]:
        """Plan sections for downloads (with sizes) and uploads."""
        lines: list[str] = []
        if plan.to_download:
            total = sum(self.download_size(k) for k in plan.to_download)
            lines.append(f"  downloads ({len(plan.to_download)}, {format_bytes(total)}):")
            lines += [f"    {k} ({format_bytes(self.download_size(k))})" for k in plan.to_download]
        uploads = self.predict_uploads(plan)
        if uploads:
            known = sum(s for s in uploads.values() if s)
            lines.append(f"  uploads ({len(uploads)}, {format_bytes(known)} known before the run):")
            lines += [f"    {k} ({format_bytes(s) if s is not None else 'made by this run'})"
                      for k, s in uploads.items()]
        if self.predicted_held:
            lines.append(f"  not uploaded: changed without a code change ({len(self.predicted_held)}):")
            lines += [f"    {k}" for k in self.predicted_held]
        return lines

    def download(self, plan: "RunPlan") -> SyncOutcome | None:
        """Fetch every planned download at once; failed ones are left for luigi to run."""
        if not plan.to_download:
            return None
        outputs = {k: self.is_dir.get(k, False) for k in plan.to_download}
        outcome = download_refs(outputs, self.state, session=self.session, record=False,
                                progress=self.options.progress, concurrency=self.options.concurrency)
        self.outcomes["download"] = outcome
        self.out(f"luisy: {outcome.summary_line()}")
        for key, reason in outcome.keys_failed:
            self.out(f"luisy: download of {key} failed ({reason}); the task will run instead")
        return outcome

    def upload(self, stored_after: Mapping[str, str], made: Collection[str] = ()) -> SyncOutcome:
        """Push every output of the graph that exists with its current hash and differs from
        the cloud; only the outputs this run ``made`` may replace a cloud copy of the same
        code hash (any other is held back with a warning)."""
        current = self.prepared.current
        outputs = {}
        for ref in self.prepared.graph.outputs.values():
            if ref is None or ref.key not in current or stored_after.get(ref.key) != current[ref.key]:
                continue
            if os.path.exists(ref.path):
                outputs[ref.key] = (ref.is_dir, current[ref.key])
        outcome = upload_keyed(outputs, session=self.session, state=self.state,
                               progress=self.options.progress, concurrency=self.options.concurrency,
                               replace=set(made))
        self.outcomes["upload"] = outcome
        self.out(f"luisy: {outcome.summary_line()}")
        for key, reason in outcome.held:
            self.out(f"luisy: warning: not uploading {key}: {reason}")
        return outcome

    def refresh(self, dry_run: bool) -> list[str]:
        """Hash-update mode with --upload: current hashes on cloud entries whose content is there."""
        outputs = {ref.key: (ref.is_dir, self.prepared.current[ref.key])
                   for ref in self.prepared.graph.outputs.values()
                   if ref is not None and ref.key in self.prepared.current}
        keys = refresh_hashes(outputs, self.state, session=self.session, dry_run=dry_run)
        verb = "would refresh" if dry_run else "refreshed"
        self.out(f"luisy: {verb} {len(keys)} cloud hash(es)" + "".join(f"\n  {k}" for k in keys))
        return keys

    def report(self, plan: "RunPlan | None", summary: Mapping[str, Any], exit_code: int,
               dry_run: bool) -> dict[str, Any]:
        """A JSON-ready report of the run."""
        doc = run_report(self.prepared, plan, summary, exit_code, dry_run)
        doc["remote"] = self.session.description
        if plan is not None:
            doc["plan"]["download"] = [{"key": k, "bytes": self.download_size(k)}
                                       for k in plan.to_download]
            doc["plan"]["upload"] = [{"key": k, "bytes": s} for k, s in self.predicted_uploads.items()]
        doc.update({d: o.to_dict() for d, o in self.outcomes.items()})
        return doc

    def write_report(self, doc: Mapping[str, Any]) -> None:
        write_json_report(self.options.json_path, doc)


def _uncreatable_local_root(store: Any) -> str | None:
    """Why the missing root of a local remote could not be created, None if it can (or
    the store is not a LocalStore): found before any task runs, not after the last."""
    from luisy_sync.stores.local import LocalStore

    if not isinstance(store, LocalStore):
        return None
    path = store.root
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        return f"the local remote {store.root} cannot be created: {path} is a file"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"the local remote {store.root} cannot be created: {path} is not writable"
    return None


def run_report(prepared: "PreparedRun", plan: "RunPlan | None", summary: Mapping[str, Any],
               exit_code: int, dry_run: bool) -> dict[str, Any]:
    """The cloud-independent part of a run's JSON report: plan and task outcomes."""
    doc: dict[str, Any] = {"dry_run": dry_run, "exit_code": exit_code}
    if plan is not None:
        names = {t.task_id: str(t) for t in prepared.graph.tasks}
        doc["plan"] = {"run": [names.get(n, n) for n in plan.to_run], "download": [],
                       "upload": [], "delete": list(plan.outdated_to_delete)}
    doc["tasks"] = {state: sorted(str(t) for t in tasks) for state, tasks in summary.items()
                    if tasks and state in ("completed", "already_done", "failed",
                                           "upstream_failure", "scheduling_error")}
    return doc


def write_json_report(path: str | None, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path`` (``-`` = stdout; nothing when ``path`` is empty)."""
    if not path:
        return
    text = json.dumps(doc, indent=1, sort_keys=True)
    if path == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
