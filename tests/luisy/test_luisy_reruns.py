"""Reruns after code changes, hash-update mode, dry runs and failures (in-process runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import luisy

TASKS = '''
    import os

    import luisy

    from .helpers import scale


    def log_run(name):
        with open(os.environ["LUISY_TEST_RUNLOG"], "a") as fh:
            fh.write(name + "\\n")


    @luisy.raw
    class Source(luisy.Task):
        n = luisy.IntParameter(default=3)

        def run(self):
            log_run("Source")
            self.write(list(range(self.n)))


    @luisy.interim
    @luisy.requires(Source)
    class Scaled(luisy.Task):
        """Scales the numbers."""

        def run(self):
            log_run("Scaled")
            self.write([scale(x) for x in self.input().read()])


    @luisy.interim
    @luisy.requires(Source)
    class Total(luisy.Task):
        def run(self):
            log_run("Total")
            self.write(sum(self.input().read()))


    @luisy.final
    @luisy.requires(Scaled, Total, as_dict=True)
    class Final(luisy.Task):
        def run(self):
            log_run("Final")
            if os.environ.get("LUISY_TEST_FAIL") == "Final":
                raise RuntimeError("asked to fail")
            self.write({"scaled": self.input()["Scaled"].read(),
                        "total": self.input()["Total"].read()})
'''

HELPERS = '''
    FACTOR = 2


    def scale(x):
        return x * FACTOR
'''


@pytest.fixture
def pipeline(make_package, working_dir, run_log):
    pkg = make_package({"tasks.py": TASKS, "helpers.py": HELPERS})

    def run(**kw):
        mod = pkg.load()
        result = luisy.build(mod.Final(n=3), **kw)
        return result, run_log()

    result, runs = run()
    assert result.success and runs == ["Final", "Scaled", "Source", "Total"]
    return pkg, run


def hash_file(working_dir: Path, project: str) -> dict[str, str]:
    return json.loads((working_dir / project / ".luisy.hash").read_text())


def test_first_run_writes_outputs_and_hash_file(pipeline, working_dir) -> None:
    pkg, run = pipeline
    stored = hash_file(working_dir, pkg.name)
    assert set(stored) == {
        f"/{pkg.name}/raw/Source_n=3.pkl",
        f"/{pkg.name}/interim/Scaled_n=3.pkl",
        f"/{pkg.name}/interim/Total_n=3.pkl",
        f"/{pkg.name}/final/Final_n=3.pkl",
    }
    result, runs = run()
    assert result.success and runs == []
    final = pkg.load().Final(n=3)
    assert final.read() == {"scaled": [0, 2, 4], "total": 3}


def test_change_to_task_reruns_it_and_downstream(pipeline) -> None:
    pkg, run = pipeline
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) + 1 for x")
    result, runs = run()
    assert result.success and runs == ["Final", "Scaled"]
    assert sorted(result.deleted) == sorted(
        [f"/{pkg.name}/interim/Scaled_n=3.pkl", f"/{pkg.name}/final/Final_n=3.pkl"])
    assert pkg.load().Final(n=3).read()["scaled"] == [1, 3, 5]
    assert run()[1] == []


def test_change_to_helper_reruns_its_users(pipeline) -> None:
    pkg, run = pipeline
    pkg.edit("helpers.py", "FACTOR = 2", "FACTOR = 3")
    result, runs = run()
    assert runs == ["Final", "Scaled"]
    assert pkg.load().Final(n=3).read()["scaled"] == [0, 3, 6]


def test_change_to_upstream_reruns_everything_downstream(pipeline) -> None:
    pkg, run = pipeline
    pkg.edit("tasks.py", "list(range(self.n))", "list(range(1, self.n + 1))")
    result, runs = run()
    assert runs == ["Final", "Scaled", "Source", "Total"]


@pytest.mark.parametrize("old,new", [
    ('"""Scales the numbers."""', '"""Scales the numbers by FACTOR, a longer docstring."""'),
    ('log_run("Scaled")', 'log_run("Scaled")  # a comment'),
    ('self.write([scale(x) for x in self.input().read()])',
     'self.write(\n                [scale(x)\n                 for x in self.input().read()]\n            )'),
])
def test_docstring_comment_and_formatting_changes_rerun_nothing(pipeline, old, new) -> None:
    pkg, run = pipeline
    pkg.edit("tasks.py", old, new)
    result, runs = run()
    assert result.success and runs == []


def test_hash_update_mode_refreshes_without_running(pipeline, working_dir) -> None:
    pkg, run = pipeline
    before = hash_file(working_dir, pkg.name)
    scaled_key = f"/{pkg.name}/interim/Scaled_n=3.pkl"
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) * 1 for x")
    result, runs = run(hash_update_mode=True)
    assert runs == [] and result.success
    after = hash_file(working_dir, pkg.name)
    assert after[scaled_key] != before[scaled_key]
    assert after[f"/{pkg.name}/raw/Source_n=3.pkl"] == before[f"/{pkg.name}/raw/Source_n=3.pkl"]
    assert set(result.recorded) == {scaled_key, f"/{pkg.name}/final/Final_n=3.pkl"}
    assert run()[1] == []


def test_hash_update_mode_does_not_add_new_entries(pipeline, working_dir) -> None:
    pkg, run = pipeline
    path = working_dir / pkg.name / ".luisy.hash"
    stored = hash_file(working_dir, pkg.name)
    total_key = f"/{pkg.name}/interim/Total_n=3.pkl"
    del stored[total_key]
    path.write_text(json.dumps(stored))
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) * 1 for x")
    run(hash_update_mode=True)
    assert total_key not in hash_file(working_dir, pkg.name)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p)] = (st.st_mtime_ns, st.st_size, p.read_bytes() if p.is_file() else b"")
    return out


def test_dry_run_changes_nothing_on_disk(pipeline, working_dir) -> None:
    pkg, run = pipeline
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) - 1 for x")
    before = snapshot(working_dir)
    result, runs = run(dry_run=True)
    assert runs == [] and snapshot(working_dir) == before
    assert len(result.plan.to_run) == 2 and len(result.plan.outdated_to_delete) == 2
    result, runs = run(hash_update_mode=True, dry_run=True)
    assert runs == [] and snapshot(working_dir) == before


def test_failed_task_hash_is_not_recorded(pipeline, working_dir, monkeypatch) -> None:
    pkg, run = pipeline
    final_key = f"/{pkg.name}/final/Final_n=3.pkl"
    old_final = hash_file(working_dir, pkg.name)[final_key]
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) + 2 for x")
    monkeypatch.setenv("LUISY_TEST_FAIL", "Final")
    result, runs = run()
    assert not result.success and result.exit_code != 0
    assert runs == ["Final", "Scaled"]
    stored = hash_file(working_dir, pkg.name)
    assert final_key not in stored or stored[final_key] == old_final
    assert f"/{pkg.name}/interim/Scaled_n=3.pkl" in stored
    monkeypatch.delenv("LUISY_TEST_FAIL")
    result, runs = run()
    assert result.success and runs == ["Final"]


def test_external_tasks_are_never_deleted(make_package, working_dir, run_log) -> None:
    pkg = make_package({"tasks.py": '''
        import os
        import luisy

        @luisy.raw
        @luisy.json_output
        class Data(luisy.ExternalTask):
            def get_file_name(self):
                return "data"

        @luisy.final
        @luisy.requires(Data)
        class Use(luisy.Task):
            def run(self):
                open(os.environ["LUISY_TEST_RUNLOG"], "a").write("Use\\n")
                self.write(self.input().read()["x"] * 2)
        '''})
    raw = working_dir / pkg.name / "raw"
    raw.mkdir(parents=True)
    (raw / "data.json").write_text('{"x": 21}')
    mod = pkg.load()
    assert luisy.build(mod.Use()).success and mod.Use().read() == 42
    pkg.edit("tasks.py", "return \"data\"", "return 'data'  # same")
    pkg.edit("tasks.py", "class Data(luisy.ExternalTask):", "class Data(luisy.ExternalTask):\n    x = 1")
    mod = pkg.load()
    result = luisy.build(mod.Use())
    assert result.success
    assert (raw / "data.json").exists()
    assert f"/{pkg.name}/raw/data.json" not in result.deleted
    assert run_log() == ["Use", "Use"]


class FakeTerminal:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked = 0

    def isatty(self) -> bool:
        return True

    def readline(self) -> str:
        self.asked += 1
        return self.answer + "\n"


def test_confirmation_on_a_terminal(pipeline, working_dir, monkeypatch) -> None:
    from luisy.run import confirm

    assert confirm("?", no_ask=True, stdin=FakeTerminal("n"))
    term = FakeTerminal("n")
    assert not confirm("?", no_ask=False, stdin=term) and term.asked == 1
    assert confirm("?", no_ask=False, stdin=FakeTerminal("y"))

    pkg, run = pipeline
    pkg.edit("tasks.py", "[scale(x) for x", "[scale(x) * 5 for x")
    before = snapshot(working_dir)
    monkeypatch.setattr("sys.stdin", FakeTerminal("no"))
    result, runs = run(no_ask=False)
    assert runs == [] and not result.success and snapshot(working_dir) == before
    monkeypatch.setattr("sys.stdin", FakeTerminal("y"))
    result, runs = run(no_ask=False)
    assert result.success and runs == ["Final", "Scaled"]
