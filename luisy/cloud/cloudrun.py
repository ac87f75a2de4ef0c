"""The cloud side of one luisy run: check the remote, plan, download before luigi,
upload after it, and report.

    sync = CloudRun.start(prepared, options, out)       # before anything changes
    plan = prepared.plan(sync.plan_entries(), download=..., upload=...)
    sync.download(plan)                                  # all at once, before luigi
    ... luigi runs (workers may fork; nothing is transferred inside it) ...
    sync.upload(recorded_hashes, made)                   # all at once, after luigi
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from luisy.cloud.session import CloudSession, open_session
from luisy.cloud.state import CloudState
from luisy.cloud.outputs_report import OutputsReport
from luisy.cloud.sync import scan_outputs
from luisy.cloud.uploadplan import plan_uploads
from luisy.cloud.verbs import download, read_state, refresh_hashes, upload
from luisy.config import Config
from luisy.errors import CloudError
from luisy.graph import Output
from luisy.hashfile import CloudEntry
from luisy.report import run_report
from luisy.run import PreparedRun
from luisy.runplan import RunPlan
from luisy_sync.conventions import format_bytes
from luisy_sync.stores.base import Store
from luisy_sync.transfer import DEFAULT_CONCURRENCY


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
        """Whether the run syncs with the cloud at all."""
        return self.download or self.upload


@dataclass
class CloudRun:
    """State of the cloud side of one run. ``distributed``: other machines change the
    cloud during the run, so it is read again before the upload."""

    prepared: PreparedRun
    options: CloudOptions
    session: CloudSession
    state: CloudState
    out: Callable[[str], None] = print
    distributed: bool = False
    outcomes: dict[str, OutputsReport] = field(default_factory=dict)
    predicted_uploads: dict[str, int | None] = field(default_factory=dict)
    predicted_held: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, prepared: PreparedRun, options: CloudOptions,
              out: Callable[[str], None] = print, *, distributed: bool = False) -> CloudRun:
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
        return cls(prepared, options, session, state, out, distributed)

    @property
    def uploads(self) -> bool:
        """Whether the run uploads."""
        return self.options.upload

    @property
    def downloads(self) -> bool:
        """Whether the run downloads."""
        return self.options.download

    @property
    def is_dir(self) -> dict[str, bool]:
        """Output key -> directory output, for every output of the graph."""
        return {ref.key: ref.is_dir for ref in self.prepared.graph.outputs.values() if ref}

    def plan_entries(self) -> dict[str, CloudEntry]:
        """Cloud entries for the planner (per output the stored version with its current
        code hash, else the latest upload): only those whose content can be downloaded
        verified."""
        return self.state.verifiable_entries(self.is_dir)

    def download_size(self, key: str) -> int:
        """Bytes the download of ``key`` moves."""
        files = self.state.expected_files(key, self.is_dir.get(key, False)) or {}
        return sum(f.size for f in files.values())

    def predict_uploads(self, plan: RunPlan) -> dict[str, int | None]:
        """Outputs the upload will push: existing ones whose hash or content differs
        (scanned now, size known) and ones the run makes whose cloud hash differs."""
        if not self.options.upload:
            return {}
        outputs = self.prepared.outputs
        present = [outputs[k] for k in plan.up_to_date if k in outputs]
        local = self.session.call(scan_outputs, Config().working_dir, [o.key for o in present])
        up = plan_uploads(present, local, self.state, replace=())  # these are not recomputed
        self.predicted_held = up.held
        sizes: dict[str, int | None] = {
            k: sum(local[p].size for p in up.content[k]) for k in up.keys}
        for key in plan.to_upload:
            sizes.setdefault(key, None)
        self.predicted_uploads = dict(sorted(sizes.items()))
        return self.predicted_uploads

    def plan_lines(self, plan: RunPlan) -> list[str]:
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

    def download(self, plan: RunPlan) -> OutputsReport | None:
        """Fetch every planned download at once; failed ones are left for luigi to run."""
        if not plan.to_download:
            return None
        refs = [ref for ref in self.prepared.graph.outputs.values()
                if ref is not None and ref.key in plan.to_download]
        outcome = download(refs, session=self.session, state=self.state, record=False,
                           progress=self.options.progress, concurrency=self.options.concurrency)
        self.outcomes["download"] = outcome
        self.out(f"luisy: {outcome.summary_line()}")
        for key, reason in outcome.keys_failed:
            self.out(f"luisy: download of {key} failed ({reason}); the task will run instead")
        return outcome

    def upload(self, stored_after: Mapping[str, str], made: Collection[str] = ()) -> bool:
        """Push every output of the graph that exists with its current hash and differs from
        the cloud; only the outputs this run ``made`` may replace a cloud copy of the same
        code hash (any other is held back with a warning). False when an upload failed."""
        if self.distributed:  # other machines and this machine's task processes changed it
            self.state = read_state(self.prepared.graph.projects(), session=self.session)
        outputs: list[Output] = [o for o in self.prepared.outputs.values()
                                 if stored_after.get(o.key) == o.code_hash and os.path.exists(o.path)]
        outcome = upload(outputs, session=self.session, state=self.state,
                         progress=self.options.progress, concurrency=self.options.concurrency,
                         replace=set(made), parts=self.prepared.parts)
        self.outcomes["upload"] = outcome
        self.out(f"luisy: {outcome.summary_line()}")
        for key, reason in outcome.held:
            self.out(f"luisy: warning: not uploading {key}: {reason}")
        for key, reason in outcome.kept:
            self.out(f"luisy: {key}: {reason}")
        return outcome.ok

    def refresh(self, dry_run: bool) -> list[str]:
        """Hash-update mode with --upload: current hashes on cloud entries whose content is there."""
        keys = refresh_hashes(self.prepared.outputs.values(), self.state, session=self.session,
                              dry_run=dry_run)
        verb = "would refresh" if dry_run else "refreshed"
        self.out(f"luisy: {verb} {len(keys)} cloud hash(es)" + "".join(f"\n  {k}" for k in keys))
        return keys

    def report(self, plan: RunPlan | None, summary: Mapping[str, Any], exit_code: int,
               dry_run: bool) -> dict[str, Any]:
        """A JSON-ready report of the run."""
        doc = run_report(self.prepared.graph, plan, summary, exit_code, dry_run)
        doc["remote"] = self.session.description
        if plan is not None:
            doc["plan"]["download"] = [{"key": k, "bytes": self.download_size(k)}
                                       for k in plan.to_download]
            doc["plan"]["upload"] = [{"key": k, "bytes": s} for k, s in self.predicted_uploads.items()]
        doc.update({d: o.to_dict() for d, o in self.outcomes.items()})
        return doc


def _uncreatable_local_root(store: Store) -> str | None:
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
