"""Blocking cloud operations for luisy (and for scale-out workers): read the cloud hash
files, download outputs by key, upload outputs of tasks or keys.

Every function drives luisy_sync through the process-wide bridge, so it may be called
from any thread, from a forked luigi worker, or from a thread running an asyncio loop::

    from luisy.cloud import download_keys, upload_outputs
    upload_outputs([task])                      # after the task completed
    download_keys(["/proj/interim/X.pkl"])      # fetch (verified) before reading
"""

from __future__ import annotations

import logging
import os
from collections.abc import Container, Iterable, Mapping
from typing import Any, Callable

import luigi

from luisy.cloud.cloudhash import CloudState, Entry, read_cloud_state
from luisy.cloud.remote import CloudError, CloudSession, current_session, object_name, project_of
from luisy.cloud.transfers import (SyncOutcome, download_outputs, plan_uploads, refresh_cloud_hashes,
                                   scan_outputs, upload_planned)
from luisy.config import Config, add_working_dir
from luisy.hashfile import hash_file_path, read_hash_file, write_hash_file
from luisy_sync.errors import SyncError, one_line
from luisy_sync.progress import ProgressCallback
from luisy_sync.transfer import DEFAULT_CONCURRENCY, first_error

Progress = bool | ProgressCallback | None
logger = logging.getLogger(__name__)


def bridge_call(session: CloudSession, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on the bridge; engine errors become one-line CloudErrors."""
    try:
        return session.run(fn, *args, **kwargs)
    except BaseException as raised:
        exc = first_error(raised) if isinstance(raised, BaseExceptionGroup) else raised
        if isinstance(exc, CloudError):
            raise exc from None
        if isinstance(exc, (SyncError, OSError)):
            raise CloudError(f"cloud sync failed ({session.description}): {one_line(exc, with_type=False)}") from None
        raise


def read_state(projects: Iterable[str], *, session: CloudSession | None = None) -> CloudState:
    """Cloud hash entries and folder listings of ``projects``."""
    session = session or current_session()
    return bridge_call(session, read_cloud_state, session.store(), list(projects))


def read_cloud_entries(projects: str | Iterable[str], *,
                       session: CloudSession | None = None) -> dict[str, Entry]:
    """Output key -> cloud entry (``{"hash", "digest", "size"}`` or ``{"hash", "files", ...}``;
    1.4.7 entries come as ``{"hash"}``) for one project or several."""
    projects = [projects] if isinstance(projects, str) else list(projects)
    return read_state(projects, session=session).entries


def record_local_hashes(hashes: Mapping[str, str]) -> None:
    """Merge ``key -> code hash`` into the local ``.luisy.hash`` of each key's project."""
    wd = Config().working_dir
    by_project: dict[str, dict[str, str]] = {}
    for key, value in hashes.items():
        by_project.setdefault(project_of(key), {})[key] = value
    for project, updates in sorted(by_project.items()):
        path = hash_file_path(wd, project)
        stored = read_hash_file(path)
        merged = {**stored, **updates}
        if merged != stored:
            write_hash_file(path, merged)


def _is_dir_in_cloud(key: str, state: CloudState) -> bool:
    entry = state.entries.get(key) or {}
    if "files" in entry:
        return True
    if "digest" in entry:
        return False
    return object_name(key) not in state.objects and bool(state.objects.with_prefix(object_name(key)))


def download_refs(outputs: Mapping[str, bool], state: CloudState, *,
                  session: CloudSession | None = None, record: bool = True,
                  progress: Progress = None, concurrency: int = DEFAULT_CONCURRENCY) -> SyncOutcome:
    """Download outputs ``key -> is_dir`` named in ``state`` (all at once, verified).

    Keys without verifiable cloud content fail with a reason and are not touched.
    With ``record`` the cloud code hash of each downloaded output goes to the local
    ``.luisy.hash``.
    """
    session = session or current_session()
    wanted = {}
    missing = []
    for key, is_dir in outputs.items():
        files = state.expected_files(key, is_dir)
        if files is None:
            missing.append((key, "no verifiable content in the cloud"))
        else:
            wanted[key] = (is_dir, files)
    wd = Config().working_dir
    os.makedirs(wd, exist_ok=True)
    if wanted:
        outcome = bridge_call(session, download_outputs, session.store(), wd, wanted,
                        concurrency=concurrency, progress=progress)
    else:
        outcome = SyncOutcome("download")
    if record and outcome.keys_done:
        record_local_hashes({k: state.entries[k]["hash"] for k in outcome.keys_done})
    if missing:
        failed = tuple(sorted([*outcome.keys_failed, *missing]))
        outcome = SyncOutcome(outcome.direction, outcome.keys_done, failed, outcome.files,
                              outcome.bytes, outcome.seconds, outcome.planned, outcome.planned_bytes)
    return outcome


def download_keys(keys: Iterable[str], *, session: CloudSession | None = None,
                  state: CloudState | None = None, record: bool = True, progress: Progress = None,
                  concurrency: int = DEFAULT_CONCURRENCY) -> SyncOutcome:
    """Download the outputs ``keys`` (e.g. ``/proj/interim/X.pkl``) from the cloud, verified."""
    keys = list(dict.fromkeys(keys))
    session = session or current_session()
    if state is None:
        state = read_state({project_of(k) for k in keys}, session=session)
    outputs = {k: _is_dir_in_cloud(k, state) for k in keys}
    return download_refs(outputs, state, session=session, record=record, progress=progress,
                         concurrency=concurrency)


def _outputs_of(items: Iterable[luigi.Task | str], session: CloudSession,
                hashes: Mapping[str, str] | None) -> dict[str, tuple[bool, str]]:
    """``key -> (is_dir, code hash)`` for tasks or keys whose output exists locally."""
    from luisy.graph import output_ref

    items = list(items)
    tasks = [t for t in items if isinstance(t, luigi.Task)]
    known = dict(session.current_hashes)
    known.update(hashes or {})
    refs = [(ref, t) for t in tasks if (ref := output_ref(t)) is not None]
    unhashed = [t for ref, t in refs if ref.key not in known]
    if unhashed:
        from luisy.codehash import compute_task_hashes

        by_task = compute_task_hashes(unhashed)
        known.update({ref.key: by_task[t] for ref, t in refs if t in by_task})
    out: dict[str, tuple[bool, str]] = {}
    for ref, _ in refs:
        if os.path.exists(ref.path):
            out[ref.key] = (ref.is_dir, known[ref.key])
    keys = [k for k in items if isinstance(k, str)]
    stored: dict[str, dict[str, str]] = {}
    for key in keys:
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
        out[key] = (os.path.isdir(path), code_hash)
    return out


def upload_keyed(outputs: Mapping[str, tuple[bool, str]], *, session: CloudSession | None = None,
                 state: CloudState | None = None, progress: Progress = None, dry_run: bool = False,
                 concurrency: int = DEFAULT_CONCURRENCY,
                 replace: Container[str] | None = None) -> SyncOutcome:
    """Upload outputs ``key -> (is_dir, code hash)`` whose hash or content differs from
    the cloud, then update each project's cloud hash file once. ``replace``: the keys
    that may replace an intact cloud copy of the same code hash (None: all; see
    ``plan_uploads``)."""
    session = session or current_session()
    if state is None:
        state = read_state({project_of(k) for k in outputs}, session=session)
    wd = Config().working_dir
    store = session.store()

    async def go() -> SyncOutcome:
        local = await scan_outputs(wd, sorted(outputs))
        plan = plan_uploads(outputs, local, state, replace=replace)
        return await upload_planned(store, wd, plan, local, state, concurrency=concurrency,
                                    progress=progress, dry_run=dry_run)

    return bridge_call(session, go)


def upload_outputs(tasks_or_keys: Iterable[luigi.Task | str], *, session: CloudSession | None = None,
                   state: CloudState | None = None, hashes: Mapping[str, str] | None = None,
                   progress: Progress = None, dry_run: bool = False,
                   concurrency: int = DEFAULT_CONCURRENCY) -> SyncOutcome:
    """Upload the outputs of luisy tasks (or of output keys) that differ from the cloud.

    The code hash recorded for a task is the session's current hash, else it is
    computed; for a key it comes from ``hashes``, the session or the local ``.luisy.hash``.
    """
    session = session or current_session()
    outputs = _outputs_of(tasks_or_keys, session, hashes)
    return upload_keyed(outputs, session=session, state=state, progress=progress, dry_run=dry_run,
                        concurrency=concurrency)


def refresh_hashes(outputs: Mapping[str, tuple[bool, str]], state: CloudState, *,
                   session: CloudSession | None = None, dry_run: bool = False) -> list[str]:
    """Hash-update mode: set the current hash on cloud entries whose content is there."""
    session = session or current_session()
    return bridge_call(session, refresh_cloud_hashes, session.store(), outputs, state, dry_run=dry_run)


def _in_cloud(key: str, state: CloudState) -> bool:
    """Whether the cloud holds anything for output ``key`` (an entry, a blob or a folder)."""
    name = object_name(key)
    return key in state.entries or name in state.objects or bool(state.objects.with_prefix(name + "/"))


def sync_task_output(task: luigi.Task, direction: str, *, overwrite: bool = False,
                     session: CloudSession | None = None) -> SyncOutcome:
    """``Task.download()`` / ``Task.upload(overwrite)``: move one task's output.

    Download: the cloud content, verified and renamed into place, with its cloud code hash
    recorded locally; nothing happens when the cloud has no verifiable copy. Upload: when
    the cloud has no copy (or ``overwrite``) and the content or hash differs, the output
    and its entry in the cloud ``.luisy.hash`` (conditional write). The hash recorded is
    the local ``.luisy.hash`` entry of the output, else the current code hash.
    Raises ``ValueError`` for a task without local output, CloudError when a transfer fails.
    """
    from luisy.graph import output_ref

    ref = output_ref(task)
    if ref is None:
        raise ValueError(f"{task} has no output in the working dir to {direction}")
    session = session or current_session()
    nothing = SyncOutcome(direction)
    if direction == "upload":
        if not os.path.exists(ref.path):
            raise ValueError(f"{task} has no output yet ({ref.key}): run it before upload()")
        session.check(create=True)
        state = read_state([ref.project], session=session)
        if _in_cloud(ref.key, state) and not overwrite:
            logger.info("%s is already in the cloud; upload(overwrite=True) replaces it", ref.key)
            return nothing
        stored = read_hash_file(hash_file_path(Config().working_dir, ref.project)).get(ref.key)
        outcome = upload_outputs([ref.key] if stored else [task], session=session, state=state,
                                 hashes={ref.key: stored} if stored else None)
    else:
        if not session.check(create=False):
            logger.info("%s: the cloud container does not exist, nothing to download", ref.key)
            return nothing
        state = read_state([ref.project], session=session)
        if state.expected_files(ref.key, _is_dir_in_cloud(ref.key, state)) is None:
            logger.info("%s is not in the cloud (no verifiable copy), nothing to download", ref.key)
            return nothing
        outcome = download_keys([ref.key], session=session, state=state)
    if not outcome.ok:
        key, reason = outcome.keys_failed[0]
        raise CloudError(f"{direction} of {key} failed: {reason}")
    return outcome
