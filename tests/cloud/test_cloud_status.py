"""``luisy status`` (subprocesses, local remote and Azurite): local and cloud state per
task, sizes, and the reason each task would run, for every kind of change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]

UTIL = '''
FACTOR = 2


def scale(values):
    return [FACTOR * v for v in values]
'''

TASKS = '''
import pandas as pd

import luisy

from .util import scale


@luisy.project_name("statusproj")
@luisy.raw
class Raw(luisy.Task):
    n = luisy.IntParameter(default=4)

    def run(self):
        self.write(list(range(self.n)))


@luisy.project_name("statusproj")
@luisy.interim
@luisy.requires(Raw)
class Double(luisy.Task):
    def run(self):
        self.write(scale(self.input().read()))


@luisy.project_name("statusproj")
@luisy.interim
@luisy.requires(Raw)
class Table(luisy.Task):
    def run(self):
        self.write(pd.DataFrame({"x": self.input().read()}))


@luisy.project_name("statusproj")
@luisy.final
@luisy.requires(Double, Table, as_dict=True)
class Final(luisy.Task):
    def run(self):
        self.write({"sum": sum(self.input()["Double"].read()), "rows": len(self.input()["Table"].read())})
'''


@pytest.fixture
def project(pipeline):
    """The pipeline package of this test: tasks.py and a same-package util.py."""
    (pipeline.dir / "util.py").write_text(textwrap.dedent(UTIL).lstrip())
    pipeline.write(textwrap.dedent(TASKS).lstrip())
    return pipeline


def luisy_cli(args: list[str], wd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "luisy.cli", *args, "--working-dir", str(wd)],
                          capture_output=True, text=True, env=full_env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def status(project, wd: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, dict]:
    """``luisy status --json -``: task family -> its line."""
    proc = luisy_cli(["status", "--module", project.module, "Final", "--json", "-", *extra], wd, env)
    doc = json.loads(proc.stdout)
    return {line["task"].split("(")[0]: line for line in doc["tasks"]}


def run(project, wd: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    luisy_cli(["--module", project.module, "Final", "--no-ask", *extra], wd, env)


def reasons(line: dict) -> list[tuple[str, str]]:
    return [(r["kind"], r["subject"].split(".")[-1].split("(")[0].split("_")[0]) for r in line["reasons"]]


def test_status_names_the_reason_for_every_kind_of_change(project, remote, tmp_path) -> None:
    pins = tmp_path / "requirements.txt"
    pins.write_text("pandas==2.0.0\n")
    env = {"LUISY_REQUIREMENTS_PATH": str(pins)}
    a = tmp_path / "a"
    fresh = status(project, a, env=env)
    assert {t: (line["local"], line["cloud"], line["action"]) for t, line in fresh.items()} == {
        t: ("missing", "none", "run") for t in ("Raw", "Double", "Table", "Final")}
    assert reasons(fresh["Double"]) == [("output", "pkl")]

    run(project, a, "--upload", env=env)
    done = status(project, a, env=env)
    assert {(line["local"], line["cloud"], line["action"]) for line in done.values()} == {
        ("current", "current", "keep")}
    assert all(line["local_bytes"] == line["cloud_bytes"] > 0 for line in done.values())

    (project.dir / "util.py").write_text(textwrap.dedent(UTIL).lstrip().replace("FACTOR = 2", "FACTOR = 3"))
    changed = status(project, a, env=env)
    assert changed["Double"]["action"] == "rerun" and changed["Double"]["local"] == "outdated"
    assert changed["Double"]["cloud"] == "other"
    assert reasons(changed["Double"]) == [("helper", "FACTOR")]
    assert ("upstream", "Double") in reasons(changed["Final"])
    assert changed["Raw"]["action"] == changed["Table"]["action"] == "keep"
    text = luisy_cli(["status", "--module", project.module, "Final"], a, env).stdout
    assert f"why: same-package constant {project.name}.util.FACTOR in {project.name}/util.py changed" in text

    project.edit("pd.DataFrame({\"x\": self.input().read()})", "pd.DataFrame({\"y\": self.input().read()})")
    pins.write_text("pandas==2.1.0\n")
    both = status(project, a, env=env)
    assert reasons(both["Table"]) == [("code", "Table"), ("package", "pandas")]
    assert "package pandas 2.0.0 -> 2.1.0" in [r["text"] for r in both["Table"]["reasons"]]

    # another machine, nothing local: the current versions of Raw come from the cloud,
    # the others were made by other code there and run
    b = tmp_path / "b"
    other = status(project, b, env=env)
    assert (other["Raw"]["local"], other["Raw"]["cloud"]) == ("missing", "current")
    assert other["Raw"]["action"] == "download"
    assert (other["Double"]["cloud"], other["Double"]["action"]) == ("other", "run")
    assert "made by other code" in other["Double"]["reasons"][0]["text"]
    # ... and why the cloud's copy is not the current one: its parts are kept with its version
    assert reasons(other["Double"])[1:] == [("helper", "FACTOR")]
    assert reasons(other["Table"])[1:] == [("code", "Table"), ("package", "pandas")]


def test_status_changes_nothing_and_can_skip_the_cloud(project, local_remote, tmp_path) -> None:
    a = tmp_path / "a"
    run(project, a)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    lines = status(project, a, "--no-cloud")
    assert {(line["local"], line["cloud"], line["action"]) for line in lines.values()} == {("current", "-", "keep")}
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == before
    assert not local_remote.exists()  # the cloud was not even created


def test_an_output_made_before_parts_were_recorded_says_so(project, local_remote, tmp_path) -> None:
    a = tmp_path / "a"
    run(project, a)
    (a / "statusproj" / ".luisy.parts").unlink()
    (project.dir / "util.py").write_text(textwrap.dedent(UTIL).lstrip().replace("FACTOR = 2", "FACTOR = 5"))
    line = status(project, a)["Double"]
    assert line["action"] == "rerun" and line["reasons"][0]["kind"] == "no-record"
    assert "no record of what the old hash was made of" in line["reasons"][0]["text"]
