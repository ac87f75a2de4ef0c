"""A small luisy pipeline that runs anywhere: it makes its own (seeded) raw data.

    luisy --module luisy.examples.pipeline FinalTask --working-dir /tmp/w --no-ask

Outputs land in ``<working dir>/luisy_example/{raw,interim,final}``.
"""

from __future__ import annotations

import random

import pandas as pd

import luisy

PROJECT = "luisy_example"
LABELS = ("alpha", "beta", "gamma")


def summarize(values: pd.Series) -> dict[str, float]:
    """Count, mean and spread of one label's values."""
    return {
        "count": int(values.count()),
        "mean": round(float(values.mean()), 6),
        "spread": round(float(values.max() - values.min()), 6),
    }


@luisy.project_name(PROJECT)
@luisy.raw
@luisy.csv_output
class Measurements(luisy.Task):
    """Synthetic raw measurements: one row per sample, labelled."""

    seed = luisy.IntParameter(default=7)
    n_rows = luisy.IntParameter(default=300)

    def run(self) -> None:
        rng = random.Random(self.seed)
        rows = [
            {"sample": i, "label": rng.choice(LABELS), "value": rng.gauss(10.0, 3.0)}
            for i in range(self.n_rows)
        ]
        self.write(pd.DataFrame(rows))


@luisy.project_name(PROJECT)
@luisy.interim
@luisy.requires(Measurements)
class LabelStats(luisy.Task):
    """Statistics of one label (the label is part of the file name)."""

    label = luisy.Parameter()

    def run(self) -> None:
        df = self.input().read()
        stats = summarize(df.loc[df["label"] == self.label, "value"])
        self.write(pd.DataFrame([{"label": self.label, **stats}]))


@luisy.project_name(PROJECT)
@luisy.interim
@luisy.requires(Measurements)
@luisy.parquetdir_output
class MeasurementsByLabel(luisy.Task):
    """The raw data as a directory of parquet files (a directory output)."""

    def get_folder_name(self) -> str:
        return f"measurements_seed={self.seed}_rows={self.n_rows}"

    def run(self) -> None:
        df = self.input().read()
        self.write(df.sort_values(["label", "sample"]).reset_index(drop=True))


@luisy.project_name(PROJECT)
@luisy.final
@luisy.inherits(Measurements)
class StatsTable(luisy.ConcatenationTask):
    """All label statistics in one table."""

    labels = luisy.ListParameter(default=tuple(LABELS))

    def requires(self) -> list[LabelStats]:
        return [self.clone(LabelStats, label=label) for label in self.labels]


@luisy.project_name(PROJECT)
@luisy.final
@luisy.requires(StatsTable, MeasurementsByLabel, as_dict=True)
@luisy.json_output
class FinalTask(luisy.Task):
    """A JSON report combining the statistics and the partitioned data."""

    def run(self) -> None:
        stats = self.input()["StatsTable"].read()
        data = self.input()["MeasurementsByLabel"].read()
        self.write({
            "rows": int(len(data)),
            "labels": {r["label"]: {k: r[k] for k in ("count", "mean", "spread")}
                       for r in stats.to_dict(orient="records")},
        })
