"""The luisy command (subprocesses): tutorial pipeline end to end, reruns, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The docs' "reruns" tutorial and the index example, made runnable.
TUTORIAL = '''
    import os

    import luisy


    def log_run(name):
        with open(os.environ["LUISY_TEST_RUNLOG"], "a") as fh:
            fh.write(name + "\\n")


    @luisy.raw
    @luisy.csv_output()
    class RawFileA(luisy.ExternalTask):
        def get_file_name(self):
            return 'file_a'


    @luisy.raw
    @luisy.csv_output()
    class RawFileB(luisy.ExternalTask):

        def get_file_name(self):
            return 'file_b'


    @luisy.interim
    @luisy.requires(RawFileA)
    @luisy.csv_output()
    class InterimFile(luisy.Task):

        def run(self):
            log_run("InterimFile")
            df = self.input().read()
            df["y"] = df["x"] * 2
            self.write(df)


    @luisy.final
    @luisy.requires(InterimFile, RawFileB)
    @luisy.csv_output()
    class FinalFile(luisy.Task):

        def run(self):
            log_run("FinalFile")
            interim, raw_b = [t.read() for t in self.input()]
            self.write(interim.merge(raw_b, on="x"))


    @luisy.raw
    @luisy.csv_output(delimiter=',')
    class InputFile(luisy.ExternalTask):
        label = luisy.Parameter()

        def get_file_name(self):
            return f"input_{self.label}"


    @luisy.interim
    @luisy.requires(InputFile)
    class ProcessedFile(luisy.Task):
        def run(self):
            log_run("ProcessedFile")
            df = self.input().read()
            self.write(df)


    @luisy.final
    class MergedFile(luisy.ConcatenationTask):
        def requires(self):
            for label in ['a', 'b', 'c', 'd']:
                yield ProcessedFile(label=label)
'''


@pytest.fixture
def project(tmp_path: Path):
    src = tmp_path / "src"
    (src / "example_project").mkdir(parents=True)
    (src / "example_project" / "__init__.py").write_text("")
    (src / "example_project" / "tasks.py").write_text(textwrap.dedent(TUTORIAL).lstrip())
    wd = tmp_path / "projects"
    raw = wd / "example_project" / "raw"
    raw.mkdir(parents=True)
    (raw / "file_a.csv").write_text("x\n1\n2\n")
    (raw / "file_b.csv").write_text("x,z\n1,a\n2,b\n")
    for label in "abcd":
        (raw / f"input_{label}.csv").write_text(f"label,v\n{label},1\n")
    env = {k: v for k, v in os.environ.items() if k != "WORKING_DIR"}
    env.update(PYTHONPATH=os.pathsep.join([str(src), str(REPO)]),
               LUISY_TEST_RUNLOG=str(tmp_path / "runs.log"), PYTHONDONTWRITEBYTECODE="1")
    log = tmp_path / "runs.log"

    def luisy(*args: str, env_extra: dict[str, str] | None = None):
        proc = subprocess.run(
            [sys.executable, "-m", "luisy", *args], capture_output=True, text=True,
            env={**env, **(env_extra or {})}, timeout=120, stdin=subprocess.DEVNULL)
        runs = sorted(log.read_text().split()) if log.exists() else []
        if log.exists():
            log.unlink()
        return proc, runs

    return src / "example_project" / "tasks.py", wd, luisy


def test_tutorial_runs_unchanged_then_nothing_then_changed_task(project) -> None:
    tasks_py, wd, luisy = project
    args = ["--module", "example_project.tasks", "FinalFile", "--working-dir", str(wd), "--no-ask"]
    proc, runs = luisy(*args)
    assert proc.returncode == 0, proc.stderr
    assert runs == ["FinalFile", "InterimFile"]
    assert "tasks to run (2)" in proc.stdout
    assert (wd / "example_project" / "final" / "FinalFile.csv").read_text().splitlines() == [
        "x,y,z", "1,2,a", "2,4,b"]
    stored = json.loads((wd / "example_project" / ".luisy.hash").read_text())
    assert set(stored) == {"/example_project/raw/file_a.csv", "/example_project/raw/file_b.csv",
                           "/example_project/interim/InterimFile.csv",
                           "/example_project/final/FinalFile.csv"}

    proc, runs = luisy(*args)
    assert proc.returncode == 0 and runs == []
    assert "nothing to run" in proc.stdout

    tasks_py.write_text(tasks_py.read_text().replace('df["x"] * 2', 'df["x"] * 3'))
    proc, runs = luisy(*args[:-1], "--dry-run")
    assert proc.returncode == 0 and runs == []
    assert "/example_project/interim/InterimFile.csv" in proc.stdout
    assert "outdated outputs to delete (2)" in proc.stdout
    proc, runs = luisy(*args)
    assert proc.returncode == 0 and runs == ["FinalFile", "InterimFile"]
    assert "2,6,b" in (wd / "example_project" / "final" / "FinalFile.csv").read_text()


def test_index_example_with_workers_and_env_working_dir(project) -> None:
    _, wd, luisy = project
    proc, runs = luisy("--module", "example_project.tasks", "MergedFile", "--workers", "2",
                       "--no-ask", env_extra={"WORKING_DIR": str(wd)})
    assert proc.returncode == 0, proc.stderr
    assert runs == ["ProcessedFile"] * 4
    assert (wd / "example_project" / "final" / "MergedFile.pkl").exists()


def test_failed_task_gives_nonzero_exit(project) -> None:
    tasks_py, wd, luisy = project
    tasks_py.write_text(tasks_py.read_text().replace(
        'log_run("FinalFile")', 'log_run("FinalFile"); raise RuntimeError("x")'))
    proc, runs = luisy("--module", "example_project.tasks", "FinalFile",
                       "--working-dir", str(wd), "--no-ask")
    assert proc.returncode != 0 and runs == ["FinalFile", "InterimFile"]
    stored = json.loads((wd / "example_project" / ".luisy.hash").read_text())
    assert "/example_project/final/FinalFile.csv" not in stored


def test_dry_run_on_fresh_dir_creates_nothing(project, tmp_path) -> None:
    _, _, luisy = project
    fresh = tmp_path / "fresh"
    proc, runs = luisy("--module", "example_project.tasks", "FinalFile",
                       "--working_dir", str(fresh), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "tasks to run" in proc.stdout and "missing external data" in proc.stdout
    assert not fresh.exists()


ERRORS = [
    (["--module", "no_such_pkg.tasks", "FinalFile"], "cannot import module 'no_such_pkg.tasks'"),
    (["--module", "example_project.tasks", "NoSuchTask"], "unknown task"),
    (["--module", "luisy.examples.pipeline", "FinalTask", "--seed", "abc"], "bad parameter value"),
    (["--module", "luisy.examples.pipeline", "FinalTask", "--no-such-flag", "1"],
     "unrecognized arguments"),
    (["--module", "luisy.examples.pipeline"], "No task specified"),
    (["FinalTask"], "name the module: luisy --module"),
]


@pytest.mark.parametrize("args,message", ERRORS, ids=[e[1][:20] for e in ERRORS])
def test_cli_errors_are_one_line_exit_2(project, args, message) -> None:
    _, wd, luisy = project
    proc, _ = luisy(*args, "--working-dir", str(wd))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("luisy: error: "), proc.stderr
    assert message in lines[0] and "Traceback" not in proc.stderr


def test_missing_working_dir_is_an_error(project) -> None:
    _, _, luisy = project
    proc, _ = luisy("--module", "example_project.tasks", "FinalFile")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "luisy: error: no working dir: pass --working-dir DIR or set WORKING_DIR")


def test_console_script_and_cloud_flags_accepted(project, tmp_path) -> None:
    _, wd, _ = project
    exe = Path(sys.executable).with_name("luisy")
    if not exe.exists():
        pytest.skip("luisy console script not installed")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [str(exe), "--module", "luisy.examples.pipeline", "FinalTask", "--n-rows", "20",
         "--working-dir", str(tmp_path / "w"), "--no-ask", "--upload", "--download",
         "--remote", (tmp_path / "remote").as_uri()], capture_output=True, text=True, env=env,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "luisy: upload: 7 output(s)" in proc.stdout
    assert (tmp_path / "remote" / "luisy_example" / ".luisy.hash").is_file()
    assert (tmp_path / "w" / "luisy_example" / "final").is_dir()


def test_unknown_task_guesses_only_pipeline_tasks(project) -> None:
    _, wd, luisy = project
    proc, _ = luisy("--module", "example_project.tasks", "FinalFil", "--working-dir", str(wd))
    assert proc.returncode == 2
    assert "did you mean FinalFile?" in proc.stderr
    assert "SparkTask" not in proc.stderr and "Config" not in proc.stderr


def test_json_report_without_cloud_flags(project, tmp_path) -> None:
    _, wd, luisy = project
    args = ["--module", "example_project.tasks", "FinalFile", "--working-dir", str(wd), "--no-ask"]
    proc, runs = luisy(*args, "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0 and runs == ["FinalFile", "InterimFile"], proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 0
    assert report["plan"]["run"] == ["InterimFile()", "FinalFile()"]
    assert sorted(report["tasks"]["completed"]) == ["FinalFile()", "InterimFile()"]
    proc, runs = luisy(*args, "--json")
    assert proc.returncode == 0 and runs == []
    assert json.loads(proc.stdout)["tasks"] == {"already_done": ["FinalFile()"]}
    assert "nothing to run" in proc.stderr  # the plan goes to stderr when stdout holds JSON


def test_task_may_put_files_into_its_output_dir(project) -> None:
    tasks_py, wd, luisy = project
    (tasks_py.parent / "multi.py").write_text(textwrap.dedent('''
        import os

        import luisy


        @luisy.interim
        class Parts(luisy.Task):
            def run(self):
                path = os.path.join(self.get_outdir(), "part_1.txt")
                with open(path, "w") as fh:
                    fh.write("one")
                self.write([path])
    '''))
    proc, _ = luisy("--module", "example_project.multi", "Parts", "--working-dir", str(wd), "--no-ask")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (wd / "example_project" / "interim" / "part_1.txt").read_text() == "one"
    assert (wd / "example_project" / "interim" / "Parts.pkl").exists()


def test_package_in_cwd_but_not_on_path_says_pythonpath(tmp_path) -> None:
    # the console script, like `luigi --module`, does not import from the current directory
    exe = Path(sys.executable).with_name("luisy")
    if not exe.exists():
        pytest.skip("luisy console script not installed")
    (tmp_path / "mypipe").mkdir()
    (tmp_path / "mypipe" / "__init__.py").write_text("")
    (tmp_path / "mypipe" / "tasks.py").write_text(textwrap.dedent("""
        import luisy

        @luisy.final
        class Hello(luisy.Task):
            def run(self):
                self.write({"hello": 1})
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [str(exe), "--module", "mypipe.tasks", "Hello", "--working-dir", str(tmp_path / "wd"), "--no-ask"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "luisy: error: cannot import module 'mypipe.tasks': No module named 'mypipe'; 'mypipe' is in "
        "this directory but not on the path: run with PYTHONPATH=. or pip install it"]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": "."}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "wd" / "mypipe" / "final").is_dir()
