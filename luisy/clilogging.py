"""Logging of the ``luisy`` command: luisy's and luisy_sync's lines on stderr, the Azure
libraries quiet, and luigi's execution summary kept off stderr (the CLI prints it on stdout)."""

from __future__ import annotations

import logging
import sys

SUMMARY_BANNER = "===== Luigi Execution Summary ====="


class _DropLuigiSummary(logging.Filter):
    """luigi logs its execution summary to stderr; the CLI prints it on stdout instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return SUMMARY_BANNER not in record.getMessage()


def configure_cli_logging() -> None:
    """luisy's and luisy_sync's loggers print to stderr; luigi configures its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname).1s %(name)s %(message)s"))
    for name in ("luisy", "luisy_sync"):
        log = logging.getLogger(name)
        log.setLevel(logging.INFO)
        log.addHandler(handler)
        log.propagate = False
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    # azure-identity warns with a many-line list of every credential it tried; luisy's own
    # error line already says that no credential was found and what to set
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    interface = logging.getLogger("luigi-interface")
    if not any(isinstance(f, _DropLuigiSummary) for f in interface.filters):
        interface.addFilter(_DropLuigiSummary())
