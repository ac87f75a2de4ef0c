"""Output locations, auto file names (1.4.7 rules), keys, related instances."""

from __future__ import annotations

import datetime
import os

import luigi
import pytest

import luisy
from luisy.filenames import auto_file_name, string_repr, strip_ending
from luisy.graph import build_graph, output_ref


@pytest.mark.parametrize("value,text", [
    ("a b/c", "a_b_c"),
    (3, "3"),
    (None, "None"),
    ([1, "x y"], "1_x_y"),
    ((("a", 1), "b"), "a_1_b"),
    (datetime.date(2021, 1, 5), "2021-01-05"),
    (1.5, "1.5"),
])
def test_string_repr(value, text) -> None:
    assert string_repr(value) == text


def test_auto_file_name_sorts_and_excludes() -> None:
    params = [("b", 2), ("a", None), ("working_dir", "/x"), ("c", "z")]
    assert auto_file_name("T", params) == "T_a=None_b=2_c=z"
    assert auto_file_name("T", params, excl_none=True) == "T_b=2_c=z"
    assert auto_file_name("T", params, excl_params=["c"]) == "T_a=None_b=2"


def test_strip_ending() -> None:
    assert strip_ending("file.csv", "csv") == "file"
    assert strip_ending("file", "csv") == "file"


@luisy.interim
class Plain(luisy.Task):
    b = luisy.IntParameter(default=1)
    a = luisy.Parameter(default="x y")


@luisy.final
@luisy.auto_filename(excl_none=True, excl_params=["skip"])
@luisy.csv_output(sep=";")
class Tuned(luisy.Task):
    cols = luisy.ListParameter(default=None)
    skip = luisy.IntParameter(default=0)
    month = luisy.Parameter(default="2021-01")


@luisy.raw
@luisy.project_name("otherproject")
class Named(luisy.ExternalTask):
    def get_file_name(self):
        return "export.xlsx"

    def get_sub_dir(self):
        return "dumps"


@luisy.raw
@luisy.xlsx_output
class NamedXlsx(luisy.ExternalTask):
    def get_file_name(self):
        return "export.xlsx"


@luisy.interim
@luisy.parquetdir_output("spark/result")
class FixedDir(luisy.Task):
    pass


def test_paths_and_keys(working_dir) -> None:
    mod = __name__.split(".")[0]
    cases = [
        (Plain(), f"/{mod}/interim/Plain_a=x_y_b=1.pkl", False),
        (Tuned(cols=["A", "B"]), f"/{mod}/final/Tuned_cols=A_B_month=2021-01.csv", False),
        (Tuned(), f"/{mod}/final/Tuned_month=2021-01.csv", False),
        (Named(), "/otherproject/raw/dumps/export.xlsx.pkl", False),
        (NamedXlsx(), f"/{mod}/raw/export.xlsx", False),
        (FixedDir(), f"/{mod}/interim/spark/result", True),
    ]
    for task, key, is_dir in cases:
        ref = output_ref(task)
        assert ref.key == key
        assert ref.path == os.path.join(str(working_dir), *key.strip("/").split("/"))
        assert ref.is_dir is is_dir
        assert task.output().path == ref.path
    assert not (working_dir / mod).exists()  # computing paths creates nothing


def test_wrapper_tasks_have_no_output_key(working_dir) -> None:
    @luisy.final
    class Wrap(luisy.WrapperTask):
        def requires(self):
            return [Plain(b=1), Plain(b=2)]

    graph = build_graph(Wrap())
    assert graph.outputs[Wrap()] is None
    assert len(graph.keys()) == 2
    assert graph.tasks[-1] == Wrap()


def test_task_in_luisy_package_needs_a_project_name() -> None:
    class Bad(luisy.Task):
        pass

    Bad.__module__ = "luisy.somewhere"
    with pytest.raises(ValueError, match="project_name"):
        Bad()


def test_requires_and_inherits_pass_parameters(working_dir) -> None:
    @luisy.requires(Plain, Tuned, as_dict=True)
    class Both(luisy.Task):
        pass

    @luisy.requires(Plain, Tuned)
    class AsList(luisy.Task):
        pass

    @luisy.requires(Plain, as_dict=True)
    class Single(luisy.Task):
        pass

    @luisy.inherits(Plain)
    class Inh(luisy.Task):
        pass

    both = Both(b=5)
    assert both.requires() == {"Plain": Plain(b=5), "Tuned": Tuned()}
    assert AsList(b=5).requires() == [Plain(b=5), Tuned()]
    assert Single(b=2).requires() == {"Plain": Plain(b=2)}
    assert Inh(b=7).b == 7


def test_get_related_instances(working_dir) -> None:
    for task in (Plain(b=1, a="q"), Plain(b=22, a="r")):
        task.write({"b": task.b})
    Tuned(cols=["A"]).write(__import__("pandas").DataFrame({"x": [1]}))
    found = Plain.get_related_instances()
    assert sorted(found, key=lambda t: t.b) == [Plain(b=1, a="q"), Plain(b=22, a="r")]
    (tuned,) = Tuned.get_related_instances()
    assert tuned.output().path == Tuned(cols=["A"]).output().path


def test_read_before_run_points_to_related_instances(working_dir) -> None:
    with pytest.raises(ValueError, match="get_related_instances"):
        Plain(b=99).read()


def test_clean_removes_output_but_not_external(working_dir) -> None:
    Plain().write(1)
    assert Plain().complete()
    Plain().clean()
    assert not Plain().complete()
    with pytest.raises(ValueError, match="external"):
        NamedXlsx().clean()


def test_parameter_classes_are_luigis() -> None:
    for name in ("Parameter", "IntParameter", "ListParameter", "MonthParameter",
                 "DateParameter", "BoolParameter", "FloatParameter", "DictParameter",
                 "TupleParameter", "DateIntervalParameter"):
        assert getattr(luisy, name) is getattr(luigi, name)


def test_set_working_dir_and_missing_working_dir(tmp_path) -> None:
    luisy.Config().reset()
    luisy.Config().set_param("working_dir", None)
    with pytest.raises(ValueError, match="working dir"):
        Plain().output()
    luisy.set_working_dir(tmp_path)
    assert Plain().get_outdir().startswith(str(tmp_path))
    luisy.Config().reset()
