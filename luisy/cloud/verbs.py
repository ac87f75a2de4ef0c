"""The blocking cloud verbs (see :mod:`luisy.cloud`): read the cloud state, download,
upload, refresh hashes, and the two task hooks (``Task.download()``/``upload()`` and
reading a missing output after ``activate_download()``).

Each verb drives luisy_sync through the session (:meth:`CloudSession.call`), so it may be
called from any thread, from a forked luigi worker, or from a thread running a loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Mapping

import luigi

from luisy.cloud.cache import cache_of
from luisy.cloud.gc import DEFAULT_GRACE_DAYS, GcReport
from luisy.cloud.gc import collect_garbage as collect
from luisy.cloud.session import CloudSession, current_session
from luisy.cloud.state import CloudState
from luisy.cloud.outputs_report import OutputsReport, nothing
from luisy.cloud.sync import Progress, refresh_cloud_hashes
from luisy.cloud.sync import download as download_outputs
from luisy.cloud.sync import upload as upload_outputs
from luisy.codehash.parts import HashParts
from luisy.config import Config, add_working_dir
from luisy.errors import CloudError
from luisy.gcplan import GcPlan
from luisy.graph import Output, OutputRef, output_ref
from luisy.hashfile import hash_file_path, project_of, read_hash_file, record_hashes
from luisy_sync.transfer import DEFAULT_CONCURRENCY

logger = logging.getLogger(__name__)


def read_state(projects: str | Iterable[str], *, session: CloudSession | None = None,
               hashes: Mapping[str, str] | None = None) -> CloudState:
    """Cloud hash entries, versions and folder listings of one project or several
    (through the session's per-process cache, revalidated now). ``hashes``: the code
    hash each output wants (its version is used when stored), by default the session's
    current hashes."""
    session = session or current_session()
    state = cache_of(session).state([projects] if isinstance(projects, str) else projects)
    state.hashes.update(session.current_hashes if hashes is None else hashes)
    return state


def record_local_hashes(hashes: Mapping[str, str]) -> None:
    """Merge ``key -> code hash`` into the local ``.luisy.hash`` of each key's project."""
    record_hashes(Config().working_dir, hashes)


def download(items: Iterable[OutputRef | str], *, session: CloudSession | None = None,
             state: CloudState | None = None, record: bool = True, progress: Progress = None,
             concurrency: int = DEFAULT_CONCURRENCY) -> OutputsReport:
    """Download outputs (refs, or keys such as ``/proj/interim/X.pkl``) from the cloud,
    verified, renamed into place when complete: the stored version with the code hash
    ``state`` wants for it, else the latest upload. Outputs without verifiable cloud
    content fail with a reason and are not touched. With ``record`` the cloud code hash
    of each downloaded output goes to the local ``.luisy.hash``."""
    items = list(items)
    session = session or current_session()
    if state is None:
        state = read_state({r if isinstance(r, str) else r.key for r in items}, session=session)
    wd = Config().working_dir
    refs = [r if not isinstance(r, str) else
            OutputRef(r, add_working_dir(r), project_of(r), state.is_dir(r)) for r in items]
    refs = list({r.key: r for r in refs}.values())
    outcome = session.call(download_outputs, session.store(), wd, refs, state,
                           concurrency=concurrency, progress=progress)
    if record and outcome.keys_done:
        record_local_hashes({k: entry.code_hash for k in outcome.keys_done
                             if (entry := state.entry(k)) is not None})
    return outcome


def outputs_of(items: Iterable[luigi.Task | str | Output], *, session: CloudSession | None = None,
               hashes: Mapping[str, str] | None = None) -> list[Output]:
    """The existing local outputs of luisy tasks or output keys, each with its code hash:
    for a task the session's current hash, else computed; for a key from ``hashes``, the
    session or the local ``.luisy.hash`` (CloudError when none is known)."""
    session = session or current_session()
    items = list(items)
    known = {**session.current_hashes, **(hashes or {})}
    refs = [(ref, t) for t in items if isinstance(t, luigi.Task) and (ref := output_ref(t)) is not None]
    unhashed = [t for ref, t in refs if ref.key not in known]
    if unhashed:
        from luisy.codehash import compute_task_hashes

        by_task = compute_task_hashes(unhashed)
        known.update({ref.key: by_task[t] for ref, t in refs if t in by_task})
    out = [ref.with_hash(known[ref.key]) for ref, _ in refs if os.path.exists(ref.path)]
    out += [o for o in items if isinstance(o, Output) and os.path.exists(o.path)]
    stored: dict[str, dict[str, str]] = {}
    for key in (k for k in items if isinstance(k, str)):
        path = add_working_dir(key)
        if not os.path.exists(path):
            continue
        code_hash = known.get(key)
        if code_hash is None:
            project = project_of(key)
            if project not in stored:
                stored[project] = read_hash_file(hash_file_path(Config().working_dir, project))
            code_hash = stored[project].get(key)
        if code_hash is None:
            raise CloudError(f"no code hash known for {key}: run the task with luisy first")
        out.append(Output(key, path, project_of(key), os.path.isdir(path), code_hash))
    return list({o.key: o for o in out}.values())


def upload(items: Iterable[luigi.Task | str | Output], *, session: CloudSession | None = None,
           state: CloudState | None = None, hashes: Mapping[str, str] | None = None,
           replace: Collection[str] | None = None, progress: Progress = None, dry_run: bool = False,
           concurrency: int = DEFAULT_CONCURRENCY,
           parts: Mapping[str, HashParts] | None = None) -> OutputsReport:
    """Upload the outputs of luisy tasks, output keys or :class:`Output` records whose hash
    or content differs from the cloud, then update each project's cloud hash file once
    (read -> merge -> conditional write). ``replace``: the keys that may replace an intact
    cloud copy of the same code hash (None: all; see ``uploadplan.plan_uploads``). ``parts``:
    what each output's code hash is made of (kept with its version, for ``luisy status``)."""
    session = session or current_session()
    outputs = outputs_of(items, session=session, hashes=hashes)
    if state is None:
        state = read_state({project_of(o.key) for o in outputs}, session=session)
    outcome = session.call(upload_outputs, session.store(), Config().working_dir, outputs, state,
                           replace=replace, concurrency=concurrency, progress=progress,
                           dry_run=dry_run, parts=parts)
    cache = cache_of(session)
    hashes = {o.key: o.code_hash for o in outputs}
    kept = dict(outcome.kept)
    for key in outcome.keys_done:
        cache.remember(key, None if key in kept else state.entries.get(key),
                       state.versions.get(key, {}).get(hashes[key]))
    return outcome


def collect_garbage(*, grace_days: float = DEFAULT_GRACE_DAYS, apply: bool = False,
                    session: CloudSession | None = None) -> GcReport:
    """``luisy gc``: drop cloud versions no latest pointer references that are older than
    ``grace_days``, and the content only they name; a dry run unless ``apply``."""
    session = session or current_session()
    if not session.check(create=False):
        return GcReport(GcPlan(), grace_days, applied=apply)
    return session.call(collect, session.store(), grace_days=grace_days, apply=apply)


def refresh_hashes(outputs: Iterable[Output], state: CloudState, *,
                   session: CloudSession | None = None, dry_run: bool = False) -> list[str]:
    """Hash-update mode: set the current hash on cloud entries whose content is there."""
    session = session or current_session()
    return session.call(refresh_cloud_hashes, session.store(), list(outputs), state, dry_run=dry_run)


def sync_task_output(task: luigi.Task, direction: str, overwrite: bool = False, *,
                     session: CloudSession | None = None) -> OutputsReport:
    """``Task.download()`` / ``Task.upload(overwrite)``: move one task's output.

    Download: the cloud content (the stored version with the task's current code hash,
    else the latest upload), verified and renamed into place, with its cloud code hash
    recorded locally; nothing happens when the cloud has no verifiable copy. Upload: when
    the cloud has no copy (or ``overwrite``) and the content or hash differs, the output
    and its entry in the cloud ``.luisy.hash`` (conditional write). The hash recorded is
    the local ``.luisy.hash`` entry of the output, else the current code hash.
    Raises ``ValueError`` for a task without local output, CloudError when a transfer fails.
    """
    ref = output_ref(task)
    if ref is None:
        raise ValueError(f"{task} has no output in the working dir to {direction}")
    session = session or current_session()
    if direction == "upload":
        if not os.path.exists(ref.path):
            raise ValueError(f"{task} has no output yet ({ref.key}): run it before upload()")
        session.check(create=True)
        state = read_state([ref.project], session=session)
        if state.holds(ref.key) and not overwrite:
            logger.info("%s is already in the cloud; upload(overwrite=True) replaces it", ref.key)
            return nothing(direction)
        stored = read_hash_file(hash_file_path(Config().working_dir, ref.project)).get(ref.key)
        outcome = upload([ref.key] if stored else [task], session=session, state=state,
                         hashes={ref.key: stored} if stored else None)
    else:
        if not session.check(create=False):
            logger.info("%s: the cloud container does not exist, nothing to download", ref.key)
            return nothing(direction)
        state = read_state([ref.project], session=session, hashes=_current_hash(task, ref.key, session))
        if state.expected_files(ref.key, state.is_dir(ref.key)) is None:
            logger.info("%s is not in the cloud (no verifiable copy), nothing to download", ref.key)
            return nothing(direction)
        outcome = download([ref.key], session=session, state=state)
    if not outcome.ok:
        key, reason = outcome.keys_failed[0]
        raise CloudError(f"{direction} of {key} failed: {reason}")
    return outcome


def _current_hash(task: luigi.Task, key: str, session: CloudSession) -> dict[str, str]:
    """``{key: the current code hash of task}`` (the session's, else computed)."""
    known = session.current_hashes.get(key)
    if known is None:
        from luisy.codehash import compute_task_hashes

        known = compute_task_hashes([task])[task]
    return {key: known}


def fetch_output(task: luigi.Task) -> bool:
    """Reading a missing output after ``activate_download()``: download ``task``'s output
    when it is missing locally and current in the cloud (a stored version with the task's
    code hash, or a latest upload with it; any hash for external data), verified; its hash
    is then recorded locally.

    Returns True when the output was downloaded; CloudError when the remote is unusable
    or the download fails.
    """
    from luisy.codehash import compute_task_hashes

    ref = output_ref(task)
    if ref is None or os.path.exists(ref.path):
        return False
    session = current_session()
    if not session.check(create=False):
        return False
    code_hash = compute_task_hashes([task])[task]
    state = read_state([ref.project], session=session, hashes={ref.key: code_hash})
    entry = state.entry(ref.key)
    if entry is None:
        return False
    if not entry.is_current(code_hash, isinstance(task, luigi.ExternalTask)):
        return False
    outcome = download([ref], session=session, state=state, record=False)
    if not outcome.ok:
        key, reason = outcome.keys_failed[0]
        raise CloudError(f"download of {key} failed: {reason}")
    record_local_hashes({ref.key: code_hash})
    return True
