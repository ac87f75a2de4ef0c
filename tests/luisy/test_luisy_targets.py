"""Output formats, atomic writes and directory outputs."""

from __future__ import annotations

import importlib.util
import os

import pandas as pd
import pytest

import luisy
from luisy.hashfile import HashFileError, read_hash_file, write_hash_file

DF = pd.DataFrame({"A": [1, 2], "B": ["x", "y"]})


@luisy.interim
class AsPickle(luisy.Task):
    pass


@luisy.interim
@luisy.json_output
class AsJson(luisy.Task):
    pass


@luisy.interim
@luisy.csv_output(sep=";")
class AsCsv(luisy.Task):
    pass


@luisy.interim
@luisy.csv_output(delimiter="|", usecols=["A"])
class AsCsvReadOpts(luisy.Task):
    pass


@luisy.interim
@luisy.xlsx_output(index_col=0)
class AsXlsx(luisy.Task):
    pass


@luisy.interim
@luisy.hdf_output
class AsHdf(luisy.Task):
    pass


@luisy.interim
@luisy.parquetdir_output
class AsParquetDir(luisy.Task):
    part = luisy.IntParameter(default=0)

    def get_folder_name(self):
        return f"Partition={self.part}"


def test_pickle_and_json_round_trip(working_dir) -> None:
    AsPickle().write({"a": {1, 2}})
    assert AsPickle().read() == {"a": {1, 2}}
    AsJson().write({"a": [1, 2]})
    assert AsJson().read() == {"a": [1, 2]}


def test_csv_kwargs_go_to_pandas(working_dir) -> None:
    AsCsv().write(DF)
    text = open(AsCsv().output().path).read()
    assert text.splitlines()[0] == "A;B"
    pd.testing.assert_frame_equal(AsCsv().read(), DF)
    AsCsvReadOpts().write(DF)
    assert open(AsCsvReadOpts().output().path).read().splitlines()[0] == "A|B"
    assert list(AsCsvReadOpts().read().columns) == ["A"]


def test_xlsx_round_trip(working_dir) -> None:
    AsXlsx().write(DF)
    pd.testing.assert_frame_equal(AsXlsx().read(), DF)


def test_hdf_needs_tables(working_dir) -> None:
    if importlib.util.find_spec("tables") is None:
        with pytest.raises(ImportError, match="pip install tables"):
            AsHdf().write(DF)
        assert not AsHdf().complete()
    else:
        AsHdf().write(DF)
        pd.testing.assert_frame_equal(AsHdf().read(), DF)


def test_parquet_dir_output_is_a_directory(working_dir) -> None:
    task = AsParquetDir(part=3)
    assert task.output().path.endswith(os.path.join("interim", "Partition=3"))
    task.write(DF)
    assert os.path.isdir(task.output().path)
    pd.testing.assert_frame_equal(task.read(), DF)
    task.write(DF.iloc[:1])
    assert len(task.read()) == 1
    task.clean()
    assert not task.complete()


def test_failed_write_leaves_no_output_and_no_temp(working_dir) -> None:
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        AsPickle().write(Unpicklable())
    assert not AsPickle().complete()
    outdir = AsPickle().get_outdir()
    assert os.listdir(outdir) == []
    AsPickle().write(1)
    with pytest.raises(RuntimeError):
        AsPickle().write(Unpicklable())
    assert AsPickle().read() == 1
    assert os.listdir(outdir) == [os.path.basename(AsPickle().output().path)]


def test_failed_directory_write_keeps_previous_directory(working_dir) -> None:
    task = AsParquetDir(part=1)
    task.write(DF)
    with pytest.raises(Exception):
        task.write("not a frame")
    pd.testing.assert_frame_equal(task.read(), DF)
    assert sorted(os.listdir(task.get_outdir())) == ["Partition=1"]


def read_text_file(path):
    if path.endswith(".txt"):
        return os.path.basename(path), open(path).read()
    return None


text_directory_output = luisy.make_directory_output(read_text_file)
txt_only_output = luisy.make_directory_output(read_text_file, regex_pattern=r"^a")


@luisy.raw
@text_directory_output
class Docs(luisy.ExternalTask):
    def get_folder_name(self):
        return "docs"


@luisy.interim
@txt_only_output
class MadeDocs(luisy.Task):
    n = luisy.IntParameter(default=2)

    def run(self):
        self.write({f"a{i}.txt": f"text {i}" for i in range(self.n)} | {"b.txt": "skip"})


def test_directory_outputs(working_dir) -> None:
    docs_dir = working_dir / __name__.split(".")[0] / "raw" / "docs"
    docs_dir.mkdir(parents=True)
    (docs_dir / "one.txt").write_text("1")
    (docs_dir / "two.txt").write_text("2")
    (docs_dir / "image.png").write_bytes(b"\x89")
    assert list(Docs().read()) == [("one.txt", "1"), ("two.txt", "2")]

    made = MadeDocs(n=2)
    assert luisy.build(made).success
    assert os.path.isdir(made.output().path)
    assert made.output().path.endswith("MadeDocs_n=2")
    assert list(made.read()) == [("a0.txt", "text 0"), ("a1.txt", "text 1")]


def test_directory_staging_is_published_only_on_success(working_dir) -> None:
    target = MadeDocs(n=5).output()
    with pytest.raises(RuntimeError):
        with target.staging() as tmp:
            open(os.path.join(tmp, "a.txt"), "w").write("x")
            raise RuntimeError("crash halfway")
    assert not target.exists()
    with target.staging() as tmp:
        open(os.path.join(tmp, "a.txt"), "w").write("x")
    assert target.exists() and list(target.read()) == [("a.txt", "x")]


def test_hash_file_reads_1_4_7_format_and_writes_atomically(tmp_path) -> None:
    path = tmp_path / "proj" / ".luisy.hash"
    path.parent.mkdir()
    path.write_text('{"/proj/interim/A.pkl": "abc123", "/proj/raw/x.csv": "def"}')
    assert read_hash_file(str(path)) == {"/proj/interim/A.pkl": "abc123", "/proj/raw/x.csv": "def"}
    write_hash_file(str(path), {"/proj/final/B.pkl": "1"})
    assert read_hash_file(str(path)) == {"/proj/final/B.pkl": "1"}
    assert os.listdir(path.parent) == [".luisy.hash"]
    assert read_hash_file(str(tmp_path / "absent")) == {}
    path.write_text("{broken")
    with pytest.raises(HashFileError, match="not valid JSON"):
        read_hash_file(str(path))
    path.write_text('["list"]')
    with pytest.raises(HashFileError, match="JSON object"):
        read_hash_file(str(path))


def test_spark_decorators_work_without_pyspark_and_use_names_the_extra(working_dir) -> None:
    if importlib.util.find_spec("pyspark") is not None:
        pytest.skip("pyspark is installed here")

    @luisy.deltatable_output(table_name="t")
    class Table(luisy.SparkTask):
        pass

    @luisy.azure_blob_storage_input("https://x", "dir")
    class FromBlob(luisy.Task):
        pass

    for use in (lambda: Table().output().exists(), lambda: FromBlob().input().read(),
                lambda: Table().spark):
        with pytest.raises(ImportError, match=r"needs pyspark.*pip install 'luisy\[spark\]'"):
            use()
