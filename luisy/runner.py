"""Running tasks with luisy from Python or the CLI: the run cycle (:mod:`luisy.run`) with
the cloud side (:mod:`luisy.cloud`), and whether the run is distributed, decided once.

``luisy.build`` is :func:`run_tasks`; ``luisy.cli.build`` (the 1.4.7 name) calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import luigi
import luigi.configuration
from luigi.execution_summary import LuigiRunResult

from luisy.cloud.cloudrun import CloudOptions, CloudRun
from luisy.cloud.distributed import DistributedFactory, is_distributed
from luisy.config import Config
from luisy.run import BuildResult, PreparedRun, RunSync, execute

logger = logging.getLogger("luisy.run")  # the logger luisy.build has always reported through


def execute_run(roots: luigi.Task | Iterable[luigi.Task],
             run_luigi: Callable[[DistributedFactory | None], LuigiRunResult], cloud: CloudOptions, *,
             local_scheduler: bool, dry_run: bool, no_ask: bool, hash_update_mode: bool,
             out: Callable[[str], None]) -> BuildResult:
    """A run from the CLI or from Python: whether it is distributed is decided here, once,
    and handed to luigi (the worker factory) and to the cloud side of the run."""
    distributed = is_distributed(cloud, local_scheduler)
    factory = DistributedFactory() if distributed else None

    def start_cloud(prepared: PreparedRun) -> RunSync:
        return CloudRun.start(prepared, cloud, out, distributed=distributed)

    return execute(roots, lambda: run_luigi(factory), dry_run=dry_run, no_ask=no_ask,
                   hash_update_mode=hash_update_mode, out=out,
                   sync=start_cloud if cloud.active else None, json_path=cloud.json_path)


@contextlib.contextmanager
def _shutdown_handler_off_outside_main_thread() -> Iterator[None]:
    """luigi's worker installs a signal handler, which only the main thread may do."""
    if threading.current_thread() is threading.main_thread():
        yield
        return
    cfg = luigi.configuration.get_config()
    had = cfg.has_option("worker", "no_install_shutdown_handler")
    old = cfg.get("worker", "no_install_shutdown_handler") if had else None
    cfg.set("worker", "no_install_shutdown_handler", "true")
    try:
        yield
    finally:
        if had:
            cfg.set("worker", "no_install_shutdown_handler", old)
        else:
            cfg.remove_option("worker", "no_install_shutdown_handler")


def run_tasks(
    tasks: luigi.Task | Iterable[luigi.Task],
    workers: int = 1,
    local_scheduler: bool = True,
    *,
    dry_run: bool = False,
    hash_update_mode: bool = False,
    no_ask: bool = True,
    working_dir: str | None = None,
    download: bool = False,
    upload: bool = False,
    remote: str | None = None,
    **luigi_params: Any,
) -> BuildResult:
    """``luisy.build``: run ``tasks`` with luisy's rerun detection (like :func:`luigi.build`).

    ``download``/``upload`` sync with the cloud remote (``remote`` URL or the
    environment's); with a central scheduler (``local_scheduler=False``) that makes the
    run distributed. Extra keyword arguments go to :func:`luigi.build` (e.g. ``no_lock=False``).
    """
    if working_dir is not None:
        Config().set_param("working_dir", os.fspath(working_dir))
    task_list = [tasks] if isinstance(tasks, luigi.Task) else list(tasks)

    def run_luigi(factory: DistributedFactory | None) -> LuigiRunResult:
        if factory is not None:
            luigi_params.setdefault("worker_scheduler_factory", factory)
        with _shutdown_handler_off_outside_main_thread():
            return luigi.build(task_list, detailed_summary=True, workers=workers,
                               local_scheduler=local_scheduler, **luigi_params)

    cloud = CloudOptions(download=download, upload=upload, remote=remote, progress=False)
    return execute_run(task_list, run_luigi, cloud, local_scheduler=local_scheduler, dry_run=dry_run,
                    no_ask=no_ask, hash_update_mode=hash_update_mode, out=logger.info)
