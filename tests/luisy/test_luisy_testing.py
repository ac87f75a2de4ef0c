"""luisy.testing (the documented test helpers), WrapperTask/ConcatenationTask, the example."""

from __future__ import annotations

import json

import luigi
import pandas as pd

import luisy
from luisy.testing import LuisyTestCase, debug_run


@luisy.raw
@luisy.csv_output(sep=";")
class RawTask(luisy.ExternalTask):
    a = luigi.IntParameter(default=2)

    def get_file_name(self):
        return f"some_export_{self.a}"


@luisy.interim
@luisy.requires(RawTask)
class InterimTask(luisy.Task):
    a = luigi.IntParameter(default=2)

    def run(self):
        df = self.input().read()
        df["C"] = (df * self.a).sum(axis=1)
        self.write(df)


@luisy.final
@luisy.requires(InterimTask)
class FinalTask(luisy.Task):
    def run(self):
        self.write(self.input().read().transpose())


@luisy.final
class Broken(luisy.Task):
    def run(self):
        raise RuntimeError("boom")


DF_TEST = pd.DataFrame(data={"A": [1, 2], "B": [3, 4]})


class TestDocumentedHelpers(LuisyTestCase):
    def test_run_from_interim(self) -> None:
        df = self.run_pipeline(FinalTask(a=1), existing_outputs=[(InterimTask(a=1), DF_TEST)])
        pd.testing.assert_frame_equal(df, DF_TEST.transpose())

    def test_run_from_raw(self) -> None:
        df = self.run_pipeline(task=FinalTask(a=1), existing_outputs=[(RawTask(a=1), DF_TEST)])
        expected = pd.DataFrame(data={0: [1, 3, 4], 1: [2, 4, 6]}, index=["A", "B", "C"])
        pd.testing.assert_frame_equal(df, expected)

    def test_success_fail_missing(self) -> None:
        self.assertSuccess(FinalTask(a=1), existing_outputs=[(RawTask(a=1), DF_TEST)])
        self.assertMissing(FinalTask(a=1))
        self.assertFail(Broken())

    def test_execution_summary(self) -> None:
        summary = self.get_execution_summary(FinalTask(a=3))
        self.assertEqual(summary["upstream_missing_dependency"], {FinalTask(a=3), InterimTask(a=3)})
        self.assertEqual(summary["still_pending_ext"], {RawTask(a=3)})

    def test_return_store(self) -> None:
        store = self.run_pipeline(FinalTask(a=1), existing_outputs=[(RawTask(a=1), DF_TEST)],
                                  return_store=True)
        self.assertEqual(set(store), {RawTask(a=1), InterimTask(a=1), FinalTask(a=1)})


@luisy.interim
class Part(luisy.Task):
    label = luisy.Parameter()

    def run(self):
        self.write(pd.DataFrame({"label": [self.label], "v": [len(self.label)]}))


@luisy.final
class Merged(luisy.ConcatenationTask):
    def requires(self):
        for label in ["a", "bb", "ccc"]:
            yield Part(label=label)

    def preprocess(self, df):
        return df.reset_index(drop=True)


@luisy.final
class Wrapped(luisy.WrapperTask):
    def requires(self):
        return {"a": Part(label="a"), "bb": Part(label="bb")}


def test_concatenation_and_wrapper_tasks(working_dir) -> None:
    result = luisy.build([Merged(), Wrapped()])
    assert result.success
    assert list(Merged().read()["v"]) == [1, 2, 3]
    assert Wrapped().complete()
    assert {k: int(df["v"][0]) for k, df in Wrapped().read().items()} == {"a": 1, "bb": 2}


def test_debug_run_returns_summary(working_dir) -> None:
    summary = debug_run(Part(label="z"))
    assert summary["completed"] == {Part(label="z")}
    assert debug_run([Part(label="z")])["already_done"] == {Part(label="z")}


def test_example_pipeline_runs_and_second_run_runs_nothing(working_dir) -> None:
    from luisy.examples import pipeline

    result = luisy.build(pipeline.FinalTask(), workers=2)
    assert result.success and len(result.plan.to_run) == 7
    report = pipeline.FinalTask().read()
    assert report["rows"] == 300 and set(report["labels"]) == {"alpha", "beta", "gamma"}
    assert sum(v["count"] for v in report["labels"].values()) == 300
    stored = json.loads((working_dir / "luisy_example" / ".luisy.hash").read_text())
    assert "/luisy_example/interim/measurements_seed=7_rows=300" in stored
    again = luisy.build(pipeline.FinalTask())
    assert again.success and again.plan.to_run == () and again.summary["completed"] == set()
