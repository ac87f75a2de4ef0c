"""The ``luisy`` command: luisy's own flags, everything else goes to luigi.

    luisy --module pkg.tasks FinalTask --a 3 --workers 4 --working-dir /data --no-ask
    luisy status --module pkg.tasks FinalTask --a 3 --working-dir /data [--json] [--no-cloud]
    luisy gc [--grace-days 7] [--yes] [--json [FILE]]

From Python (the luisy 1.4.7 names): ``build(task, workers=1, **luisy_args)``,
``parse_args(argv)``, ``luisy_run(argv)``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import luigi
import luigi.interface
from luigi.cmdline_parser import CmdlineParser
from luigi.execution_summary import LuigiRunResult

from luisy.clilogging import configure_cli_logging
from luisy.clitask import import_module, root_task
from luisy.cloud.cloudrun import CloudOptions
from luisy.cloud.distributed import DistributedFactory, uses_central_scheduler
from luisy.config import DEFAULT_PARAMS, Config, azure_settings_problem, cloud_environment
from luisy.errors import CliError, LuisyError
from luisy.report import write_json_report
from luisy.run import BuildResult
from luisy.runner import execute_run, run_tasks

logger = logging.getLogger(__name__)

_SCHEDULER_FLAGS = ("--local-scheduler", "--scheduler-host", "--scheduler-url")
_LOGGING_FLAGS = ("--log-level", "--logging-conf-file", "--no-configure-logging")
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
               "0": False, "false": False, "no": False, "off": False}
#: 1.4.7 flags that set a luisy setting (argparse dest = Config parameter).
_SETTING_FLAGS = ("requirements_path", "azure_storage_key", "azure_account_name",
                  "azure_container_name")


@contextlib.contextmanager
def _argparse_raises() -> Iterator[None]:
    """Make every argparse parser (luisy's and luigi's) raise instead of exiting."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> NoReturn:
        raise CliError(message)

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def build_parser() -> argparse.ArgumentParser:
    """luisy's own options; unknown options are luigi's."""
    p = argparse.ArgumentParser(prog="luisy", add_help=False, allow_abbrev=False,
                                description="Run a luisy pipeline (other flags go to luigi).")
    p.add_argument("-h", "--help", action="store_true", help="show this help and luigi's")
    p.add_argument("--module", help="python module holding the tasks")
    p.add_argument("--working-dir", "--working_dir", dest="working_dir",
                   help="root of the project directories (default: $WORKING_DIR)")
    p.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                   help="print the plan, change nothing")
    p.add_argument("--no-ask", "--no_ask", dest="no_ask", action="store_true",
                   help="do not ask for confirmation")
    p.add_argument("--hash-update-mode", "--hash_update_mode", dest="hash_update_mode",
                   action="store_true", help="refresh stored hashes without running tasks")
    p.add_argument("--download", action="store_true", help="fetch outputs from the cloud")
    p.add_argument("--upload", action="store_true", help="push outputs to the cloud")
    p.add_argument("--remote", help="cloud location for --download/--upload: az://container[/prefix], "
                   "file:///dir or a SAS URL (default: $LUISY_REMOTE, the Azure variables, "
                   "else a local directory)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write a JSON report of the run to FILE (stdout without FILE)")
    p.add_argument("--transfer-concurrency", dest="transfer_concurrency", type=int, default=32,
                   metavar="N", help="store requests in flight during downloads/uploads (default 32)")
    p.add_argument("--requirements-path", "--requirements_path", dest="requirements_path",
                   metavar="FILE", help="pinned requirements for the code hashes "
                   "(default: $LUISY_REQUIREMENTS_PATH)")
    p.add_argument("--azure-account-name", "--azure_account_name", dest="azure_account_name",
                   metavar="NAME", help="Azure storage account (default: $LUISY_AZURE_ACCOUNT_NAME)")
    p.add_argument("--azure-storage-key", "--azure_storage_key", dest="azure_storage_key",
                   metavar="KEY", help="Azure account key (default: $LUISY_AZURE_STORAGE_KEY; "
                   "prefer the variable: a flag is visible to other users in ps)")
    p.add_argument("--azure-container-name", "--azure_container_name", dest="azure_container_name",
                   metavar="NAME", help="Azure container (default: $LUISY_AZURE_CONTAINER_NAME, "
                   "else 'projects')")
    p.add_argument("--spark", nargs="?", const="true", default=None, metavar="BOOL",
                   help="start a Spark session for Spark inputs/outputs (needs luisy[spark])")
    p.add_argument("--visualize", nargs="?", const="-", metavar="FILE",
                   help="draw the dependency tree instead of running: FILE.png/.svg/.pdf, "
                   "or a text tree on stdout without FILE")
    return p


def _normalise_spark(argv: Sequence[str]) -> list[str]:
    """``--spark`` [BOOL] -> ``--spark=BOOL``, so a bare ``--spark`` never takes the next word."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--spark":
            nxt = items[i + 1] if i + 1 < len(items) else None
            if nxt is not None and nxt.lower() in _BOOL_WORDS:
                out.append(f"--spark={nxt}")
                i += 2
                continue
            out.append("--spark=true")
        else:
            out.append(arg)
        i += 1
    return out


def _spark_wanted(value: str | None) -> bool:
    if value is None:
        return False
    if value.lower() not in _BOOL_WORDS:
        raise CliError(f"--spark takes no value or one of {', '.join(sorted(_BOOL_WORDS))}, "
                       f"not {value!r}")
    return _BOOL_WORDS[value.lower()]


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    return build_parser().parse_known_args(_normalise_spark(argv))


def parse_args(argv: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    """luisy's options of ``argv`` as a dict (settings not given are left out) and the
    rest, for luigi (``--module`` included), as in luisy 1.4.7."""
    with _argparse_raises():
        args, rest = _parse(argv)
    options = {k: v for k, v in vars(args).items() if v is not None and k not in ("help", "module")}
    options["spark"] = _spark_wanted(args.spark)
    return options, (["--module", args.module] if args.module else []) + rest


def _luigi_argv(args: argparse.Namespace, rest: list[str]) -> list[str]:
    argv = list(rest)
    if args.module:
        argv = ["--module", args.module] + argv
    if not any(a.split("=")[0] in _SCHEDULER_FLAGS for a in argv):
        argv.append("--local-scheduler")
    if not any(a.split("=")[0] in _LOGGING_FLAGS for a in argv):
        argv += ["--log-level", "INFO"]  # luigi's default is DEBUG: a line per completeness check
    return argv


def _apply_settings(args: argparse.Namespace) -> None:
    """The 1.4.7 setting flags win over their environment variables (``Config``)."""
    Config().update({name: getattr(args, name) for name in _SETTING_FLAGS
                     if getattr(args, name) is not None})
    if _spark_wanted(args.spark):
        from luisy.spark import SparkNotInstalled, start_session

        try:
            Config().set_param("spark", start_session())
        except SparkNotInstalled as exc:
            raise CliError(f"--spark: {exc}") from None


def _check_cloud_settings(args: argparse.Namespace) -> None:
    """Incomplete Azure settings stop a cloud run here, before anything is hashed or run."""
    if (args.download or args.upload) and not args.remote:
        problem = azure_settings_problem(cloud_environment())
        if problem:
            raise CliError(problem)


def _visualize(root: luigi.Task, target: str, cloud: bool) -> int:
    from luisy.visualize import picture_format, render_tree, save_visualization

    if target == "-":
        print(render_tree(root))
        return 0
    try:
        picture_format(target)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise CliError(f"cannot write {target}: directory {folder} does not exist")
    save_visualization(root, target, cloud=cloud)
    print(f"luisy: wrote the dependency tree of {root} to {target}", file=sys.stderr)
    return 0


def _check_report_path(path: str | None) -> None:
    """``--json FILE``: fail before any task runs when FILE cannot be written."""
    if not path or path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"--json {path}: it is a directory; name a file")
    if not os.path.isdir(folder):
        raise CliError(f"--json {path}: the directory {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise CliError(f"--json {path}: the directory {folder} is not writable")


def _working_dir(args: argparse.Namespace) -> str:
    """The working dir of ``--working-dir`` / ``$WORKING_DIR``, checked."""
    working_dir: str | None = args.working_dir or os.environ.get("WORKING_DIR")
    if not working_dir:
        raise CliError("no working dir: pass --working-dir DIR or set WORKING_DIR")
    if os.path.exists(working_dir) and not os.path.isdir(working_dir):
        raise CliError(f"working dir {working_dir} is not a directory")
    return working_dir


def status(argv: Sequence[str]) -> int:
    """``luisy status``: each task's local and cloud state, sizes, and why it would run
    (see :mod:`luisy.status`); ``--no-cloud`` skips the cloud. Changes nothing."""
    from luisy.status import collect_status, render_status

    args, rest = _parse([a for a in argv if a != "--no-cloud"])
    if args.help:
        print("usage: luisy status [--module M] Task [task parameters] [--working-dir DIR] "
              "[--json [FILE]] [--no-cloud] [--remote URL] [--azure-* settings]")
        return 0
    working_dir = _working_dir(args)
    _check_report_path(args.json)
    Config().update({"working_dir": working_dir, "remote": args.remote})
    _apply_settings(args)
    if args.module:
        import_module(args.module)
    root = root_task(_luigi_argv(args, rest))
    report = collect_status(root, cloud="--no-cloud" not in argv, remote=args.remote,
                            say=lambda text: print(text, file=sys.stderr))
    if args.json:
        write_json_report(args.json, report.to_json())
    if args.json != "-":
        print(render_status(report))
    return 0


def gc(argv: Sequence[str]) -> int:
    """``luisy gc``: report (dry run) or remove, with ``--yes``, cloud versions that no
    latest pointer references and that are older than ``--grace-days``, and the content
    only they name (see :mod:`luisy.cloud.gc`)."""
    from luisy.cloud import collect_garbage, open_session
    from luisy.cloud.gc import DEFAULT_GRACE_DAYS
    from luisy.gcplan import PRICE_PER_GIB_MONTH

    p = argparse.ArgumentParser(prog="luisy gc", add_help=False, allow_abbrev=False, parents=[build_parser()],
                                conflict_handler="resolve")
    p.add_argument("--grace-days", type=float, default=DEFAULT_GRACE_DAYS, metavar="DAYS")
    p.add_argument("--yes", action="store_true", help="delete (default: a dry run that changes nothing)")
    p.add_argument("--price-per-gib-month", type=float, default=PRICE_PER_GIB_MONTH, metavar="USD")
    args, rest = p.parse_known_args(list(argv))
    if args.help:
        print("usage: luisy gc [--grace-days DAYS] [--yes] [--json [FILE]] [--price-per-gib-month USD] "
              "[--remote URL] [--azure-* settings]")
        return 0
    if rest:
        raise CliError(f"luisy gc takes no task or luigi arguments: {' '.join(rest)}")
    if args.grace_days < 0:
        raise CliError("--grace-days must not be negative")
    _check_report_path(args.json)
    Config().update({"remote": args.remote})
    _apply_settings(args)
    session = open_session(args.remote)
    print(f"luisy: cloud remote: {session.description}", file=sys.stderr)
    report = collect_garbage(grace_days=args.grace_days, apply=args.yes, session=session)
    if args.json:
        write_json_report(args.json, report.to_json(args.price_per_gib_month))
    if args.json != "-":
        print("\n".join(report.summary_lines(args.price_per_gib_month)))
    return 0


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and run; returns the exit code (errors raise :class:`CliError`)."""
    if argv and argv[0] == "status":
        return status(argv[1:])
    if argv and argv[0] == "gc":
        return gc(argv[1:])
    parser = build_parser()
    args, rest = _parse(argv)
    if args.help:
        parser.print_help()
        print("\nluigi options (and the task's parameters):")
        if args.module:
            import_module(args.module)
        with contextlib.suppress(SystemExit):
            with CmdlineParser.global_instance(_luigi_argv(args, rest) + ["--help"]):
                pass
        return 0
    if not (args.working_dir or os.environ.get("WORKING_DIR")) and args.visualize == "-":
        if args.module:
            import_module(args.module)
        return _visualize(root_task(_luigi_argv(args, rest)), "-", cloud=False)
    working_dir = _working_dir(args)
    _check_report_path(args.json)
    if not args.dry_run and args.visualize is None:
        os.makedirs(working_dir, exist_ok=True)
    Config().update({"working_dir": working_dir, "download": args.download,
                     "upload": args.upload, "remote": args.remote, "no_ask": args.no_ask,
                     "dry_run": args.dry_run, "hash_update_mode": args.hash_update_mode})
    _apply_settings(args)
    _check_cloud_settings(args)
    if args.module:
        import_module(args.module)
    luigi_argv = _luigi_argv(args, rest)
    root = root_task(luigi_argv)
    if args.visualize is not None:
        return _visualize(root, args.visualize, cloud=args.download)
    if args.transfer_concurrency < 1:
        raise CliError("--transfer-concurrency must be at least 1")
    _check_spark(root)
    cloud = CloudOptions(download=args.download, upload=args.upload, remote=args.remote,
                         concurrency=args.transfer_concurrency, progress=True, json_path=args.json)

    def run_luigi(factory: DistributedFactory | None) -> LuigiRunResult:
        return luigi.interface._run(cmdline_args=luigi_argv, detailed_summary=True,
                                    worker_scheduler_factory=factory)

    def say(text: str) -> None:  # with ``--json`` on stdout, the human lines go to stderr
        print(text, file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    result = execute_run(root, run_luigi, cloud, local_scheduler=not uses_central_scheduler(luigi_argv),
                      dry_run=args.dry_run, no_ask=args.no_ask,
                      hash_update_mode=args.hash_update_mode, out=say)
    if result.summary_text:  # luigi's execution summary (":)" / ":(" lines), as 1.4.7 printed it
        say(result.summary_text.strip("\n"))
    return result.exit_code


def _check_spark(root: luigi.Task) -> None:
    from luisy.spark import SparkNotInstalled, check_spark_available
    from luisy.testing import get_all_dependencies

    try:
        check_spark_available(get_all_dependencies(root))
    except SparkNotInstalled as exc:
        raise CliError(str(exc)) from None


def build(task: luigi.Task | Sequence[luigi.Task], workers: int = 1, local_scheduler: bool = True,
          **luisy_args: object) -> BuildResult:
    """Run ``task`` with rerun detection, like :func:`luigi.build` (luisy 1.4.7's
    ``luisy.cli.build``): never asks unless ``no_ask=False``; ``hash_update_mode=True``
    only refreshes hashes. Keyword arguments are luisy settings (``download``, ``upload``,
    ``dry_run``, ``working_dir``, ``azure_*``, ``requirements_path``, ...); others go to
    :func:`luigi.build`. The result's ``tasks_set`` is luigi's summary dict (``completed``,
    ``failed``, ... -> sets of tasks).
    """
    run_args: dict[str, Any] = {k: luisy_args.pop(k) for k in ("dry_run", "hash_update_mode", "no_ask",
                                               "working_dir", "download", "upload", "remote")
                if k in luisy_args}
    Config().update({k: v for k, v in luisy_args.items() if k in DEFAULT_PARAMS})
    luigi_args: dict[str, Any] = {k: v for k, v in luisy_args.items() if k not in DEFAULT_PARAMS}
    return run_tasks(task, workers=workers, local_scheduler=local_scheduler, **run_args, **luigi_args)


def luisy_run(argv: Sequence[str] | None = None) -> None:
    """The console entry point of luisy 1.4.7: run ``argv`` and exit with its code."""
    sys.exit(main(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    configure_cli_logging()
    try:
        with _argparse_raises():
            code = run(argv)
    except LuisyError as exc:  # usage, input and cloud problems: one line, no traceback
        print(f"luisy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("luisy: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, the traceback only in debug logs
        logger.debug("luisy failed", exc_info=True)
        print(f"luisy: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
