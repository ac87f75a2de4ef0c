"""Tasks in the style of the luisy 1.4.7 docs: external raw export, interim, final,
every output decorator, a directory input, a wrapper and a concatenation."""

import json
import os

import luigi
import pandas as pd

import luisy
from luisy.decorators import make_directory_output


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
        df = self.input().read()
        df = df.transpose()
        self.write(df)


def read_note(filepath):
    if filepath.endswith(".json"):
        with open(filepath) as f:
            return json.load(f)


note_directory_output = make_directory_output(read_note, regex_pattern=r"\.json$")


@note_directory_output
@luisy.raw
class NotesDirectory(luisy.ExternalTask):
    def get_folder_name(self):
        return "notes"


@luisy.interim
@luisy.requires(NotesDirectory)
@luisy.json_output
class NoteSummary(luisy.Task):
    def run(self):
        notes = list(self.input().read())
        self.write({"count": len(notes), "total": sum(n["value"] for n in notes)})


@luisy.interim
@luisy.requires(InterimTask)
@luisy.xlsx_output
class AsExcel(luisy.Task):
    def run(self):
        self.write(self.read_input())


@luisy.interim
@luisy.requires(InterimTask)
@luisy.hdf_output
class AsHDF(luisy.Task):
    def run(self):
        self.write(self.read_input())


@luisy.interim
@luisy.requires(InterimTask)
@luisy.feather_output
class AsFeather(luisy.Task):
    def run(self):
        self.write(self.read_input().reset_index(drop=True))


@luisy.interim
@luisy.requires(InterimTask)
@luisy.parquetdir_output
class AsParquetDir(luisy.Task):
    def get_folder_name(self):
        return f"parquet_a={self.a}"

    def run(self):
        self.write(self.read_input())


@luisy.interim
@luisy.auto_filename(excl_params=["note"])
class Numbers(luisy.Task):
    n = luigi.IntParameter(default=3)
    note = luigi.Parameter(default="ignored")

    def run(self):
        self.write(pd.DataFrame({"n": list(range(self.n))}))


@luisy.final
class AllNumbers(luisy.ConcatenationTask):
    def requires(self):
        return [Numbers(n=2), Numbers(n=3)]


class Everything(luisy.WrapperTask):
    a = luigi.IntParameter(default=2)

    def requires(self):
        return {
            "final": FinalTask(a=self.a),
            "excel": AsExcel(a=self.a),
            "hdf": AsHDF(a=self.a),
            "feather": AsFeather(a=self.a),
            "parquet": AsParquetDir(a=self.a),
            "notes": NoteSummary(),
            "numbers": AllNumbers(),
        }


def make_raw_data(working_dir, a=2):
    """The files an external system would drop into <working_dir>/shop147/raw."""
    raw = os.path.join(working_dir, "shop147", "raw")
    os.makedirs(os.path.join(raw, "notes"), exist_ok=True)
    pd.DataFrame({"A": [1, 2], "B": [3, 4]}).to_csv(
        os.path.join(raw, f"some_export_{a}.csv"), sep=";", index=False)
    for i in range(3):
        with open(os.path.join(raw, "notes", f"note{i}.json"), "w") as f:
            json.dump({"value": i + 1}, f)
    with open(os.path.join(raw, "notes", "README.txt"), "w") as f:
        f.write("not a note")
