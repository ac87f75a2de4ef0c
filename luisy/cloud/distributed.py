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
  locally but is in the cloud with the current code hash is reported DONE, so no
  machine recomputes it. Lookups are served from a per-process cache of the cloud
  hash file (positive answers are final, negative ones are revalidated after 0.5 s
  by a HEAD + ETag compare). A task that is complete only locally is uploaded
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
import traceback
from collections.abc import Sequence
from typing import Any

import luigi
import luigi.interface
import luigi.worker
from luigi.configuration import get_config

from luisy.cloud.dist_index import CloudIndex, wanted_outputs
from luisy.cloud.remote import current_session
from luisy.graph import output_ref, requirements

logger = logging.getLogger(__name__)

SCHEDULER_FLAGS = ("--scheduler-host", "--scheduler-url")
FAST_POLLING = {"wait_interval": 0.2, "wait_jitter": 0.3}
"""Idle polling of a distributed worker unless [worker] in the luigi config says otherwise
(luigi's default waits up to 6 s between polls)."""

_active = False


def uses_central_scheduler(luigi_argv: Sequence[str]) -> bool:
    """Whether luigi's arguments point at a central scheduler (not ``--local-scheduler``)."""
    names = {a.split("=", 1)[0] for a in luigi_argv}
    return bool(names & set(SCHEDULER_FLAGS)) and "--local-scheduler" not in names


def is_active() -> bool:
    """True from creating a distributed worker until the end-of-run refresh."""
    return _active


def factory_for(luigi_argv: Sequence[str], cloud: Any) -> "DistributedFactory | None":
    """The worker factory for a CLI run: distributed when the run uses a central
    scheduler and ``cloud`` (CloudOptions) syncs; None (luigi's default) otherwise."""
    if cloud is None or not getattr(cloud, "active", False):
        return None
    return DistributedFactory() if uses_central_scheduler(luigi_argv) else None


def refresh_after_run(sync: Any) -> None:
    """Before the end-of-run upload of a distributed run: re-read the cloud hash files
    (other machines and this machine's task processes changed them during the run)."""
    global _active
    if not _active or sync is None:
        return
    _active = False  # one distributed run, one refresh
    from luisy.cloud.api import read_state

    sync.state = read_state(sync.prepared.graph.projects(), session=sync.session)


def _traceback() -> luigi.worker.TracebackWrapper:
    return luigi.worker.TracebackWrapper(traceback.format_exc())


class DistributedTaskProcess(luigi.worker.ContextManagedTaskProcess):
    """Runs one task: fetch missing inputs, run, upload the output before DONE."""

    index: CloudIndex

    def __init__(self, index: CloudIndex, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index = index
        self.check_complete = self._complete_or_fetch

    def _complete_or_fetch(self, task: luigi.Task) -> bool:
        """luigi's completeness check inside the task process: local, or fetched now."""
        if luigi.worker.check_complete_cached(task, self.task_completion_cache):
            return True
        if output_ref(task) is None or self.index.current_entry(task, fresh=True) is None:
            return False
        self.index.fetch([task], wait=0.0)
        return luigi.worker.check_complete_cached(task, self.task_completion_cache)

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

    def __init__(self, *args: Any, index: CloudIndex | None = None, **kwargs: Any) -> None:
        config = get_config()
        for name, value in FAST_POLLING.items():
            if name not in kwargs and not config.has_option("worker", name):
                kwargs[name] = value
        super().__init__(*args, **kwargs)
        self.index = index or CloudIndex(current_session())
        self._roots: list[luigi.Task] = []
        self._shared: set[str] = set()
        self.fetched_roots: list[str] = []

    def add(self, task: luigi.Task, *args: Any, **kwargs: Any) -> bool:
        self._roots.append(task)
        return super().add(task, *args, **kwargs)

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
        stack, todo = [task], []
        while stack:
            current = stack.pop()
            if current.task_id in self._shared:
                continue
            self._shared.add(current.task_id)
            ref = output_ref(current)
            if ref is not None and not os.path.exists(ref.path):
                continue  # not here: nothing to share below it
            if ref is not None and not self.index.in_cloud(current):
                todo.append(current)
            stack.extend(requirements(current))
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

    def _cloud_entry(self, task: luigi.Task) -> Any:
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
        global _active
        _active = True
        return DistributedWorker(scheduler=scheduler, worker_processes=worker_processes,
                                 assistant=assistant)
