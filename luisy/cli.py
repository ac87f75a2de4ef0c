"""The ``luisy`` command: luisy's own flags, everything else goes to luigi.

    luisy --module pkg.tasks FinalTask --a 3 --workers 4 --working-dir /data --no-ask
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

import luigi
import luigi.interface
from luigi.cmdline_parser import CmdlineParser
from luigi.parameter import ParameterException
from luigi.task_register import TaskClassException

from luisy.cloud.cloudrun import CloudOptions
from luisy.cloud.remote import CloudError
from luisy.codehash import CodeHashError
from luisy.config import Config
from luisy.hashfile import HashFileError
from luisy.run import OutputCollisionError, execute

logger = logging.getLogger(__name__)

EXIT_USAGE = 2
_SCHEDULER_FLAGS = ("--local-scheduler", "--scheduler-host", "--scheduler-url")
_LOGGING_FLAGS = ("--log-level", "--logging-conf-file", "--no-configure-logging")


class CliError(Exception):
    """A usage problem reported as one line, exit code 2."""


@contextlib.contextmanager
def _argparse_raises() -> Iterator[None]:
    """Make every argparse parser (luisy's and luigi's) raise instead of exiting."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> None:
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
    return p


def _import_module(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise CliError(f"cannot import module {name!r}: {exc}; check --module") from None
    except SyntaxError as exc:
        raise CliError(f"module {name!r} has a syntax error: {exc}") from None


def _root_task(luigi_argv: list[str]) -> luigi.Task:
    try:
        with CmdlineParser.global_instance(luigi_argv) as cp:
            return cp.get_task_obj()
    except TaskClassException as exc:
        raise CliError(_unknown_task(exc, "--module" in luigi_argv)) from None
    except ParameterException as exc:
        raise CliError(f"bad parameters: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise CliError(f"bad parameter value: {exc}") from None
    except SystemExit as exc:  # luigi exits with a message, e.g. when no task is named
        if exc.code in (0, None):
            raise
        raise CliError(f"{exc.code}; name a task: luisy --module pkg.mod TaskName") from None


def _is_pipeline_task(name: str) -> bool:
    """Whether ``name`` is a task of the user's pipeline (not one of luigi's or luisy's own)."""
    from luigi.task_register import Register

    cls = Register._get_reg().get(name)
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("luisy.examples."):
        return True
    return cls is not None and not module.startswith(("luigi", "luisy"))


def _unknown_task(exc: TaskClassException, has_module: bool) -> str:
    """luigi's message, with guesses limited to pipeline tasks and a hint for --module."""
    head, _, guesses = " ".join(str(exc).split()).partition(" Did you mean: ")
    names = [n for n in guesses.split() if _is_pipeline_task(n)]
    message = f"unknown task: {head.rstrip('.')}" + (f"; did you mean {', '.join(names)}?" if names else "")
    return message if has_module else f"{message}; name the module: luisy --module pkg.mod TaskName"


def _luigi_argv(args: argparse.Namespace, rest: list[str]) -> list[str]:
    argv = list(rest)
    if args.module:
        argv = ["--module", args.module] + argv
    if not any(a.split("=")[0] in _SCHEDULER_FLAGS for a in argv):
        argv.append("--local-scheduler")
    if not any(a.split("=")[0] in _LOGGING_FLAGS for a in argv):
        argv += ["--log-level", "INFO"]  # luigi's default is DEBUG: a line per completeness check
    return argv


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


def run(argv: Sequence[str]) -> int:
    """Parse ``argv`` and run; returns the exit code (errors raise :class:`CliError`)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(list(argv))
    if args.help:
        parser.print_help()
        print("\nluigi options (and the task's parameters):")
        if args.module:
            _import_module(args.module)
        with contextlib.suppress(SystemExit):
            with CmdlineParser.global_instance(_luigi_argv(args, rest) + ["--help"]):
                pass
        return 0
    working_dir = args.working_dir or os.environ.get("WORKING_DIR")
    if not working_dir:
        raise CliError("no working dir: pass --working-dir DIR or set WORKING_DIR")
    if os.path.exists(working_dir) and not os.path.isdir(working_dir):
        raise CliError(f"working dir {working_dir} is not a directory")
    _check_report_path(args.json)
    if not args.dry_run:
        os.makedirs(working_dir, exist_ok=True)
    Config().update({"working_dir": working_dir, "download": args.download,
                     "upload": args.upload, "remote": args.remote, "no_ask": args.no_ask,
                     "dry_run": args.dry_run, "hash_update_mode": args.hash_update_mode})
    if args.module:
        _import_module(args.module)
    luigi_argv = _luigi_argv(args, rest)
    root = _root_task(luigi_argv)
    if args.transfer_concurrency < 1:
        raise CliError("--transfer-concurrency must be at least 1")
    cloud = CloudOptions(download=args.download, upload=args.upload, remote=args.remote,
                         concurrency=args.transfer_concurrency, progress=True, json_path=args.json)

    def run_luigi() -> luigi.execution_summary.LuigiRunResult:
        from luisy.cloud.distributed import factory_for  # luigid + cloud: scale-out workers

        return luigi.interface._run(cmdline_args=luigi_argv, detailed_summary=True,
                                    worker_scheduler_factory=factory_for(luigi_argv, cloud))

    def say(text: str) -> None:  # with ``--json`` on stdout, the human lines go to stderr
        print(text, file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    try:
        result = execute(root, run_luigi, dry_run=args.dry_run, no_ask=args.no_ask,
                         hash_update_mode=args.hash_update_mode, cloud=cloud, out=say)
    except (HashFileError, CodeHashError, OutputCollisionError) as exc:
        raise CliError(str(exc)) from None
    except CloudError as exc:
        print(f"luisy: error: {exc}", file=sys.stderr)
        return 1
    return result.exit_code


def _configure_logging() -> None:
    """luisy's and luisy_sync's loggers print to stderr; luigi configures its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s %(message)s"))
    for name in ("luisy", "luisy_sync"):
        log = logging.getLogger(name)
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        log.propagate = False
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _configure_logging()
    try:
        with _argparse_raises():
            code = run(argv)
    except CliError as exc:
        print(f"luisy: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
