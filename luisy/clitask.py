"""From ``--module`` and the task words of a command line to a task instance, with the
one-line errors a user can act on (an unknown task with pipeline-only guesses, a package
in the current directory that is not on the path, bad parameters)."""

from __future__ import annotations

import importlib
import os

import luigi
from luigi.cmdline_parser import CmdlineParser
from luigi.parameter import ParameterException
from luigi.task_register import TaskClassException

from luisy.errors import CliError


def import_module(name: str) -> None:
    """Import ``--module``'s module; CliError (one line, with what to do) when it fails."""
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise CliError(f"cannot import module {name!r}: {exc}; {_import_hint(name, exc)}") from None
    except SyntaxError as exc:
        raise CliError(f"module {name!r} has a syntax error: {exc}") from None


def _import_hint(name: str, exc: ImportError) -> str:
    """What to do when ``--module`` cannot be imported: a package that sits in the current
    directory but is not on the path needs ``PYTHONPATH=.``, as with ``luigi --module``."""
    top = name.split(".")[0]
    if exc.name == top and (os.path.isdir(top) or os.path.isfile(f"{top}.py")):
        return f"'{top}' is in this directory but not on the path: run with PYTHONPATH=. or pip install it"
    return "check --module (the package must be installed or on PYTHONPATH)"


def root_task(luigi_argv: list[str]) -> luigi.Task:
    """The task instance luigi's command line names (task and parameters); CliError when
    the task is unknown or a parameter is bad."""
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
