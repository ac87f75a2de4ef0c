"""The JSON report of a luisy run (``--json``): plan and task outcomes; a cloud run adds
its transfers (see :mod:`luisy.cloud.cloudrun`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

from luisy.graph import TaskGraph
from luisy.runplan import RunPlan


def run_report(graph: TaskGraph, plan: RunPlan | None, summary: Mapping[str, Any],
               exit_code: int, dry_run: bool) -> dict[str, Any]:
    """The cloud-independent part of a run's JSON report: plan and task outcomes."""
    doc: dict[str, Any] = {"dry_run": dry_run, "exit_code": exit_code}
    if plan is not None:
        names = {t.task_id: str(t) for t in graph.tasks}
        doc["plan"] = {"run": [names.get(n, n) for n in plan.to_run], "download": [],
                       "upload": [], "delete": list(plan.outdated_to_delete)}
    doc["tasks"] = {state: sorted(str(t) for t in tasks) for state, tasks in summary.items()
                    if tasks and state in ("completed", "already_done", "failed",
                                           "upstream_failure", "scheduling_error")}
    return doc


def write_json_report(path: str | None, doc: Mapping[str, Any]) -> None:
    """Write ``doc`` as JSON to ``path`` (``-`` = stdout; nothing when ``path`` is empty)."""
    if not path:
        return
    text = json.dumps(doc, indent=1, sort_keys=True)
    if path == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
