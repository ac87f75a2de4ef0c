"""Scale-out on luigi's central scheduler: many machines, one cloud container.

Active when a luisy run uses a central scheduler (``--scheduler-host``/``--scheduler-url``,
i.e. ``luigid``) together with ``--upload`` or ``--download``. Every machine runs the
same command with its own working directory; luigid hands out the tasks, the cloud
container carries the outputs between machines.

What luigi does on its own (luigi 3.x, measured in tests/cloud/test_distributed_*.py):
a worker tells luigid a task is DONE or PENDING from its *local* ``complete()``. A
machine that lacks an output another machine made reports it PENDING; luigid ignores
that claim for ``stable_done_cooldown_secs`` (10 s) after the DONE, then resets the
task to PENDING and it runs again. A machine handed a task whose inputs are on
another disk fails with "Unfulfilled dependency at run time". And a worker with
nothing runnable exits at once, even while tasks it waits for run elsewhere.

What a distributed luisy worker (:class:`DistributedWorker`) does instead:

- **Output in the cloud before DONE.** A task's process uploads its output through
  the engine and merges its cloud ``.luisy.hash`` entry with a conditional write
  right after ``run()`` returns, *before* luigi reports DONE; so whoever luigid gives
  a downstream task to can fetch the input. A failed upload fails the task. With
  ``--workers N > 1`` this happens in the forked task process, so luigi's worker
  loop is never blocked; the bridge gives the child its own loop and store.
- **Cloud counts as complete.** When scheduling, a task whose output is missing
  locally but is in the cloud with the current code hash (the latest upload, or any
  stored version) is reported DONE, so no machine recomputes it. Lookups are served
  from the per-process cache of the cloud hash files and versions indexes
  (:class:`luisy.cloud.cache.StateCache`; positive answers are final,
  negative ones are revalidated after 0.5 s by a HEAD + ETag compare). A task that is complete only locally is uploaded
  first, so DONE always means "in the cloud".
- **Inputs fetched before run.** Before a task runs, the outputs of its
  requirements that are missing locally are downloaded together, verified against
  their cloud digests and renamed into place (dynamic requirements too).
- **Stay until done, then fetch the result.** The worker waits while tasks it needs
  run on other machines, and at the end downloads the outputs it asked for that
  another machine made. The end-of-run ``--upload`` re-reads the cloud first and
  still pushes whatever differs.

Guarantee: with every machine running the same code, each task runs once across
the machines, as long as no two machines start a task that luigid considers done
and the 0.5 s cache age stays below luigid's cooldown (it does by default).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import luigi
import luigi.interface
import luigi.worker
from luigi.configuration import get_config
from luigi.task import flatten

from luisy.cloud.cloudrun import CloudOptions
from luisy.cloud.session import CloudSession, current_session
from luisy.cloud.cache import StateCache, cache_of
from luisy.cloud.state import CloudState, head_objects
from luisy.cloud.verbs import download, upload
from luisy.errors import CloudError
from luisy.graph import Output, OutputRef, output_ref, requirements, walk
from luisy.hashfile import CloudEntry, project_of

logger = logging.getLogger(__name__)

SCHEDULER_FLAGS = ("--scheduler-host", "--scheduler-url")
FAST_POLLING = {"wait_interval": 0.2, "wait_jitter": 0.3}
"""Idle polling of a distributed worker unless [worker] in the luigi config says otherwise
(luigi's default waits up to 6 s between polls)."""


def uses_central_scheduler(luigi_argv: Sequence[str]) -> bool:
    """Whether luigi's arguments point at a central scheduler (not ``--local-scheduler``)."""
    names = {a.split("=", 1)[0] for a in luigi_argv}
    return bool(names & set(SCHEDULER_FLAGS)) and "--local-scheduler" not in names


def is_distributed(cloud: CloudOptions | None, local_scheduler: bool) -> bool:
    """The one rule: a run is distributed when it uses a central scheduler (luigid) and
    syncs with the cloud (``--download`` or ``--upload``)."""
    return cloud is not None and cloud.active and not local_scheduler


def wanted_outputs(roots: Iterable[luigi.Task]) -> list[luigi.Task]:
    """Tasks whose outputs a machine asked for: the roots, or for a root without its own
    output (a wrapper task) what it requires, recursively."""
    def through(task: luigi.Task) -> bool:
        return output_ref(task) is None and (isinstance(task, luigi.WrapperTask)
                                             or not flatten(task.output()))

    return [t for t in walk(roots, expand=through) if output_ref(t) is not None]


class CloudShare:
    """What a distributed worker asks the cloud (through the state cache; by default the
    process-wide one of the session) and moves (through the sync verbs), plus the code
    hash of each task."""

    def __init__(self, session: CloudSession | None = None, cache: StateCache | None = None) -> None:
        self.session = session or current_session()
        self.cache = cache or cache_of(self.session)
        self._hashes: dict[str, str] = {}

    def code_hash(self, task: luigi.Task, ref: OutputRef) -> str | None:
        """The current code hash of ``task`` (from the run's session, else computed)."""
        known = self.session.current_hashes.get(ref.key) or self._hashes.get(ref.key)
        if known is None:
            from luisy.codehash import compute_task_hashes

            known = compute_task_hashes([task]).get(task)
            if known is not None:
                self._hashes[ref.key] = known
        return known

    def current_entry(self, task: luigi.Task, *, fresh: bool = False) -> CloudEntry | None:
        """The cloud entry of ``task``'s output if it names content made by the current
        code, else None. ``fresh`` revalidates a negative answer now (a HEAD each)."""
        found = self._find(task, fresh)
        return None if found is None else found[0]

    def _find(self, task: luigi.Task, fresh: bool) -> tuple[CloudEntry, bool] | None:
        """``(entry, whether it is a stored version)`` for ``task``'s output made by the
        current code: the latest upload when it is current (no second lookup), else the
        stored version with the current code hash."""
        ref = output_ref(task)
        if ref is None:
            return None
        code_hash = self.code_hash(task, ref)
        external = isinstance(task, luigi.ExternalTask)
        for max_age in ((None, 0.0) if fresh else (None,)):
            entry = self.cache.entries(ref.project, max_age).get(ref.key)
            if entry is not None and not entry.legacy and entry.is_current(code_hash, external):
                if max_age is None:
                    self.cache.stats.hits += 1
                return entry, False
            if code_hash is not None:
                version = self.cache.versions(ref.project, max_age).get(ref.key, {}).get(code_hash)
                if version is not None:
                    return version, True
        return None

    def in_cloud(self, task: luigi.Task) -> bool:
        """Distributed completeness: the task's output is in the cloud with the current hash."""
        return self.current_entry(task) is not None

    def fetch(self, tasks: Iterable[luigi.Task], *, wait: float = 2.0) -> list[str]:
        """Download the outputs of ``tasks`` that are missing locally, verified.

        An output not (yet) in the cloud with the current hash is looked for again for
        up to ``wait`` seconds (another machine may be finishing it); then CloudError.
        Returns the keys downloaded.
        """
        wanted: dict[str, tuple[luigi.Task, OutputRef]] = {}
        for task in tasks:
            ref = output_ref(task)
            if ref is not None and not os.path.exists(ref.path):
                wanted[ref.key] = (task, ref)
        if not wanted:
            return []
        deadline = time.monotonic() + wait
        entries: dict[str, tuple[CloudEntry, bool]] = {}
        while True:
            for key, (task, _ref) in wanted.items():
                if key not in entries and (found := self._find(task, True)) is not None:
                    entries[key] = found
            missing = sorted(set(wanted) - set(entries))
            if not missing:
                break
            if time.monotonic() >= deadline:
                raise CloudError(f"{len(missing)} input(s) are neither local nor in the cloud with "
                                 f"the current code hash, first {missing[0]}; run the task that "
                                 f"makes it, or check that all machines run the same code")
            time.sleep(0.2)
        latest = {k: e for k, (e, version) in entries.items() if not version}
        names = sorted({n for k, e in latest.items() for n in e.objects(k)})
        listed = self.session.call(head_objects, self.session.store(), names)
        state = CloudState(entries=latest, objects=listed,
                           versions={k: {e.code_hash: e} for k, (e, version) in entries.items() if version},
                           hashes={k: e.code_hash for k, (e, version) in entries.items() if version})
        outcome = download([ref for _t, ref in wanted.values()], session=self.session, state=state,
                           record=True, progress=False)
        if not outcome.ok:
            key, reason = outcome.keys_failed[0]
            raise CloudError(f"download of input {key} failed: {reason}")
        return list(outcome.keys_done)

    def upload(self, task: luigi.Task) -> str | None:
        """Push ``task``'s output (if it has one and it exists) and record it in the cloud
        hash file with a conditional write. Returns the key uploaded, or None."""
        keys = self.upload_many([task])
        return keys[0] if keys else None

    def upload_many(self, tasks: Iterable[luigi.Task]) -> list[str]:
        """Push the existing outputs of ``tasks`` in one batch (content the cloud lacks
        goes up concurrently, then one conditional write per project). Returns the keys
        whose entry is now in the cloud; CloudError if any failed."""
        outputs: list[Output] = []
        for task in tasks:
            ref = output_ref(task)
            if ref is None or not os.path.exists(ref.path):
                continue
            code_hash = self.code_hash(task, ref)
            if code_hash is not None:
                outputs.append(ref.with_hash(code_hash))
        if not outputs:
            return []
        known: dict[str, CloudEntry] = {}
        for project in {project_of(o.key) for o in outputs}:
            entries = self.cache.entries(project)
            known.update({o.key: entries[o.key] for o in outputs if o.key in entries})
        state = CloudState(entries=known)
        outcome = upload(outputs, session=self.session, state=state, progress=False)
        if not outcome.ok:
            key, reason = outcome.keys_failed[0]
            raise CloudError(f"upload of {key} failed: {reason}")
        done = []
        for o in outputs:
            latest = state.entries.get(o.key)
            latest = latest if latest is not None and latest.code_hash == o.code_hash else None
            version = state.versions.get(o.key, {}).get(o.code_hash)
            if latest is not None or version is not None:
                done.append(o.key)
                self.cache.remember(o.key, latest, version)
        return sorted(done)


def _traceback() -> luigi.worker.TracebackWrapper:
    return luigi.worker.TracebackWrapper(traceback.format_exc())


class DistributedTaskProcess(luigi.worker.ContextManagedTaskProcess):
    """Runs one task: fetch missing inputs, run, upload the output before DONE."""

    index: CloudShare

    def __init__(self, index: CloudShare, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = index
        self.check_complete = self._complete_or_fetch  # type: ignore[assignment]  # luigi types it as a partial

    def _complete_or_fetch(self, task: luigi.Task) -> bool:
        """luigi's completeness check inside the task process: local, or fetched now."""
        if luigi.worker.check_complete_cached(task, self.task_completion_cache):
            return True
        if output_ref(task) is None or self.index.current_entry(task, fresh=True) is None:
            return False
        self.index.fetch([task], wait=0.0)
        return bool(luigi.worker.check_complete_cached(task, self.task_completion_cache))

    def run(self) -> None:
        if not luigi.worker._is_external(self.task):
            try:
                self.index.fetch(requirements(self.task))
            except Exception as exc:  # the dependency check in run() retries and reports it
                logger.warning("fetching inputs of %s failed: %s", self.task, exc)
        super().run()

    def _run_get_new_deps(self) -> Any:
        if self.index.current_entry(self.task) is not None:
            # another machine published this output since luigid handed the task out
            self.index.fetch([self.task], wait=0.0)
            logger.info("%s was made on another machine meanwhile: fetched, not run", self.task)
            return None
        new_deps = super()._run_get_new_deps()
        if not new_deps:
            key = self.index.upload(self.task)
            if key:
                logger.info("uploaded %s (made by %s)", key, self.task)
        return new_deps


class DistributedWorker(luigi.worker.Worker):
    """A luigi worker that shares outputs through the cloud (see the module docstring)."""

    def __init__(self, *args: Any, index: CloudShare | None = None, **kwargs: Any) -> None:
        config = get_config()
        for name, value in FAST_POLLING.items():
            if name not in kwargs and not config.has_option("worker", name):
                kwargs[name] = value
        super().__init__(*args, **kwargs)
        self.index = index or CloudShare()
        self._roots: list[luigi.Task] = []
        self._shared: set[luigi.Task] = set()
        self.fetched_roots: list[str] = []

    def add(self, task: luigi.Task, *args: Any, **kwargs: Any) -> bool:
        self._roots.append(task)
        return bool(super().add(task, *args, **kwargs))

    def _add(self, task: luigi.Task, is_complete: Any) -> Any:
        try:
            if is_complete is True:
                self._share(task)  # DONE must mean "in the cloud"
            elif is_complete is False and self.index.in_cloud(task):
                is_complete = True
        except Exception:
            is_complete = _traceback()
        return super()._add(task, is_complete)

    def _share(self, task: luigi.Task) -> None:
        """Upload, in one batch, the local outputs of ``task`` and of everything upstream
        of it that the cloud lacks (luigi does not look upstream of a complete task, but
        other machines may need those outputs)."""
        def here(current: luigi.Task) -> bool:  # not here: nothing to share below it
            ref = output_ref(current)
            return ref is None or os.path.exists(ref.path)

        todo = [t for t in walk([task], expand=here, seen=self._shared)
                if output_ref(t) is not None and here(t) and not self.index.in_cloud(t)]
        if todo:
            keys = self.index.upload_many(todo)
            logger.info("shared %d output(s) this machine had before the run", len(keys))

    def _create_task_process(self, task: luigi.Task) -> DistributedTaskProcess:
        base = super()._create_task_process(task)
        return DistributedTaskProcess(
            self.index, self._config.task_process_context, task, self._id,
            self._task_result_queue, base.status_reporter,
            use_multiprocessing=base.use_multiprocessing, worker_timeout=self._config.timeout,
            check_unfulfilled_deps=self._config.check_unfulfilled_deps,
            check_complete_on_run=self._config.check_complete_on_run,
            task_completion_cache=self._task_completion_cache)

    def _keep_alive(self, get_work_response: Any) -> bool:
        """Also wait while tasks this worker needs run on other machines."""
        return bool(get_work_response.running_tasks) or super()._keep_alive(get_work_response)

    def run(self) -> bool:
        ok = super().run()
        self._settle_history()
        # The loop ends only when nothing this worker needs runs anywhere, and an output
        # is in the cloud before its task is DONE: what is not there now will not come.
        wanted = [t for t in wanted_outputs(self._roots) if not t.complete()]
        missing = [t for t in wanted if self._cloud_entry(t) is None]
        try:
            self.fetched_roots = self.index.fetch([t for t in wanted if t not in missing])
        except Exception as exc:
            logger.error("could not fetch the requested outputs: %s", exc)
            missing = [t for t in wanted if not t.complete()]
        if self.fetched_roots:
            logger.info("fetched %d output(s) made on other machines: %s",
                        len(self.fetched_roots), ", ".join(self.fetched_roots))
        failures = any(status == luigi.worker.FAILED for _t, status, _r in self._add_task_history)
        for task in missing if not failures else ():  # the summary must not call it a success
            self._add_task_history.append((task, luigi.worker.FAILED, False))
        return ok and not missing

    def _cloud_entry(self, task: luigi.Task) -> CloudEntry | None:
        try:
            return self.index.current_entry(task, fresh=True)
        except Exception as exc:
            logger.warning("could not look up %s in the cloud: %s", task, exc)
            return None

    def _failed_in_scheduler(self) -> set[str]:
        try:
            failed = self._scheduler.task_list(luigi.worker.FAILED, "")
        except Exception as exc:
            logger.warning("could not ask the scheduler for failed tasks: %s", exc)
            return set()
        return set(failed) if isinstance(failed, dict) and "num_tasks" not in failed else set()

    def _settle_history(self) -> None:
        """Tasks this worker left PENDING count as complete in luigi's summary and status
        when another machine completed them (output in the cloud with the current hash),
        as failed when they failed on another machine."""
        last: dict[str, str] = {}
        for task, status, _runnable in self._add_task_history:
            last[task.task_id] = status
        pending = [t for t, status in last.items() if status == luigi.worker.PENDING
                   and t in self._scheduled_tasks]
        if not pending:
            return
        done = {t for t in pending if output_ref(self._scheduled_tasks[t]) is not None
                and self._cloud_entry(self._scheduled_tasks[t]) is not None}
        failed = (set(pending) - done) & self._failed_in_scheduler()
        settled = done | failed
        if not settled:
            return
        history = [h for h in self._add_task_history if h[0].task_id not in settled]
        history += [(self._scheduled_tasks[t], luigi.worker.DONE, False) for t in sorted(done)]
        history += [(self._scheduled_tasks[t], luigi.worker.FAILED, False) for t in sorted(failed)]
        self._add_task_history[:] = history
        for response in self._get_work_response_history:
            running = response.get("running_tasks") or []
            response["running_tasks"] = [r for r in running if r.get("task_id") not in settled]


class DistributedFactory(luigi.interface._WorkerSchedulerFactory):
    """luigi worker/scheduler factory making :class:`DistributedWorker` workers."""

    def create_worker(self, scheduler: Any, worker_processes: int,
                      assistant: bool = False) -> DistributedWorker:
        return DistributedWorker(scheduler=scheduler, worker_processes=worker_processes,
                                 assistant=assistant)
