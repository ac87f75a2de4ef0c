"""Hash parts: what a task's code hash is made of, and the reasons two hashes differ."""

from __future__ import annotations

import pytest

from luisy.codehash import CodePart, HashParts, compute_task_code, compute_task_hashes, explain
from luisy.codehash.parts import HELPER, NO_RECORD, OWN_CODE, PACKAGE, UPSTREAM
from luisy.codehash.versions import REQUIREMENTS_ENV

TASK = CodePart("p.tasks.T", "class", "p/tasks.py", "a" * 32)
HELP = CodePart("p.util.scale", "function", "p/util.py", "b" * 32)
BASE = HashParts(TASK, (HELP,), ("pandas==2.0.0", "python-dateutil<pandas==2.0.0"), (("Up_x_1", "c" * 32),))


def _with(**changes: object) -> HashParts:
    return HashParts(**{**BASE.__dict__, **changes})  # type: ignore[arg-type]


# id, old parts, new parts, expected (kind, subject) pairs
EXPLAIN_CASES = [
    ("same", BASE, BASE, []),
    ("no-record", None, BASE, [(NO_RECORD, "p.tasks.T")]),
    ("own-code", BASE, _with(task=CodePart("p.tasks.T", "class", "p/tasks.py", "d" * 32)),
     [(OWN_CODE, "p.tasks.T")]),
    ("helper-changed", BASE, _with(code=(CodePart("p.util.scale", "function", "p/util.py", "e" * 32),)),
     [(HELPER, "p.util.scale")]),
    ("helper-added", BASE, _with(code=(HELP, CodePart("p.util.K", "constant", "p/util.py", "f" * 32))),
     [(HELPER, "p.util.K")]),
    ("helper-dropped", BASE, _with(code=()), [(HELPER, "p.util.scale")]),
    ("package", BASE, _with(packages=("pandas==2.1.0", "python-dateutil<pandas==2.1.0")),
     [(PACKAGE, "pandas"), (PACKAGE, "python-dateutil")]),
    ("upstream", BASE, _with(upstream=(("Up_x_1", "0" * 32),)), [(UPSTREAM, "Up_x_1")]),
    ("upstream-added", BASE, _with(upstream=(("Up_x_1", "c" * 32), ("Up_y_2", "1" * 32))),
     [(UPSTREAM, "Up_y_2")]),
]


@pytest.mark.parametrize(("old", "new", "expected"), [c[1:] for c in EXPLAIN_CASES],
                         ids=[c[0] for c in EXPLAIN_CASES])
def test_explain_names_each_changed_part(old, new, expected) -> None:
    assert [(r.kind, r.subject) for r in explain(old, new)] == expected


def test_reason_texts_say_what_and_where() -> None:
    texts = [r.text for r in explain(BASE, _with(
        code=(CodePart("p.util.scale", "function", "p/util.py", "e" * 32),),
        packages=("pandas==2.1.0",)))]
    assert "same-package function p.util.scale in p/util.py changed" in texts
    assert "package pandas 2.0.0 -> 2.1.0" in texts
    assert "package python-dateutil 2.0.0 -> (not used)" in texts


def test_parts_round_trip_through_json_and_reject_malformed_records() -> None:
    assert HashParts.from_json(BASE.to_json()) == BASE
    for bad in ([], {"task": {"name": "x"}}, {"task": BASE.to_json()["task"], "packages": [1]},
                {"task": BASE.to_json()["task"], "upstream": {"a": 1}}):
        with pytest.raises(ValueError):
            HashParts.from_json(bad)


PIPELINE = {
    "util.py": '''
        FACTOR = 2

        def scale(x):
            return x * FACTOR

        def unused():
            return 0
    ''',
    "tasks.py": '''
        import luigi
        import pandas
        from .util import scale

        class Raw(luigi.ExternalTask):
            pass

        class Interim(luigi.Task):
            def requires(self):
                return Raw()

            def run(self):
                return scale(1)

        class Final(luigi.Task):
            def requires(self):
                return Interim()

            def run(self):
                return pandas.DataFrame()
    ''',
}


def _code(pkg, name: str = "Final"):
    module = pkg.load()
    return {t.task_family: c for t, c in compute_task_code([getattr(module, name)()]).items()}


def test_parts_name_the_class_helpers_constants_and_upstream(make_package) -> None:
    pkg = make_package(PIPELINE)
    code = _code(pkg)
    interim = code["Interim"].parts
    assert interim.task.name == f"{pkg.name}.tasks.Interim" and interim.task.file == f"{pkg.name}/tasks.py"
    assert {(p.name, p.kind, p.file) for p in interim.code} == {
        (f"{pkg.name}.util.scale", "function", f"{pkg.name}/util.py"),
        (f"{pkg.name}.util.FACTOR", "constant", f"{pkg.name}/util.py"),
        (f"{pkg.name}.tasks.Raw", "class", f"{pkg.name}/tasks.py")}
    assert dict(code["Final"].parts.upstream) == {pkg.load().Interim().task_id: code["Interim"].hash}
    assert any(p.startswith("pandas==") for p in code["Final"].parts.packages)
    assert {t: c.hash for t, c in code.items()} == {
        t.task_family: h for t, h in compute_task_hashes([pkg.load().Final()]).items()}


# edit (file, old, new) -> expected reasons per task family. Final's class names the class
# Interim, so Interim's helpers are part of Final's code too.
EDIT_CASES = [
    ("constant", ("util.py", "FACTOR = 2", "FACTOR = 3"),
     {"Interim": [(HELPER, "util.FACTOR")], "Final": [(HELPER, "util.FACTOR"), (UPSTREAM, "Interim")]}),
    ("function", ("util.py", "return x * FACTOR", "return x * FACTOR + 0"),
     {"Interim": [(HELPER, "util.scale")], "Final": [(HELPER, "util.scale"), (UPSTREAM, "Interim")]}),
    ("own-class", ("tasks.py", "return pandas.DataFrame()", "return pandas.DataFrame([1])"),
     {"Final": [(OWN_CODE, "tasks.Final")]}),
    ("unused-helper", ("util.py", "return 0", "return 1"), {}),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in EDIT_CASES], ids=[c[0] for c in EDIT_CASES])
def test_each_kind_of_edit_is_named(make_package, edit, expected) -> None:
    pkg = make_package(PIPELINE)
    before = _code(pkg)
    pkg.edit(*edit)
    after = _code(pkg)
    reasons = {family: [(r.kind, r.subject.removeprefix(pkg.name + ".").split("_")[0]) for r in explain(
        before[family].parts, after[family].parts)] for family in after}
    assert {f: r for f, r in reasons.items() if r} == expected
    assert {f for f in after if before[f].hash != after[f].hash} == set(expected)


def test_a_package_version_change_is_named_from_and_to(make_package, tmp_path, monkeypatch) -> None:
    pkg = make_package(PIPELINE)
    pins = tmp_path / "requirements.txt"
    pins.write_text("pandas==2.0.0\n")
    monkeypatch.setenv(REQUIREMENTS_ENV, str(pins))
    before = _code(pkg)
    pins.write_text("pandas==2.1.0\n")
    after = _code(pkg)
    texts = [r.text for r in explain(before["Final"].parts, after["Final"].parts)]
    assert texts == ["package pandas 2.0.0 -> 2.1.0"]
