"""The luisy 1.4.7 public surface (LUISY-1.4.7-SURFACE.md), used on a real working dir."""

from __future__ import annotations

import json
import os

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import luisy  # noqa: E402
import luisy.cli  # noqa: E402
import luisy.config  # noqa: E402
import luisy.helpers  # noqa: E402
import luisy.testing  # noqa: E402
import luisy.visualize  # noqa: E402
from luisy.config import Config  # noqa: E402

from shop147.tasks import (  # noqa: E402
    AllNumbers, AsExcel, AsFeather, AsHDF, AsParquetDir, Everything, FinalTask, InterimTask,
    NoteSummary, Numbers, RawTask,
)

SURFACE_TOP = """Task ExternalTask ConcatenationTask WrapperTask Config set_working_dir
activate_download raw interim final requires inherits auto_filename project_name
csv_output json_output xlsx_output hdf_output pickle_output feather_output
parquetdir_output make_directory_output deltatable_input deltatable_output
azure_blob_storage_input azure_blob_storage_output Parameter IntParameter FloatParameter
TupleParameter ListParameter DictParameter DateParameter DateIntervalParameter
BoolParameter""".split()


def test_every_top_level_name_is_there() -> None:
    missing = [n for n in SURFACE_TOP if not hasattr(luisy, n)]
    assert not missing
    for name in ("build", "parse_args", "luisy_run"):
        assert callable(getattr(luisy.cli, name))
    for name in ("LuisyTestCase", "create_testing_config", "debug_run", "get_all_dependencies",
                 "mock_target", "create_file", "DFMock", "SparkMock"):
        assert hasattr(luisy.testing, name)
    for name in ("get_default_params", "set_working_dir", "activate_download", "remove_working_dir",
                 "add_working_dir", "change_working_dir", "pass_args"):
        assert callable(getattr(luisy.config, name))
    for name in ("get_param", "set_param", "update", "reset", "init", "check_params"):
        assert callable(getattr(Config(), name))
    assert luisy.tasks.SparkTask is luisy.SparkTask
    assert callable(luisy.helpers.get_related_instances) and luisy.helpers.RegexTaskPattern
    assert callable(luisy.visualize.visualize_task) and callable(luisy.visualize.make_dependency_graph)


def test_cli_build_runs_every_output_format(wd) -> None:
    result = luisy.cli.build(Everything(), workers=1)
    assert result.success
    assert result.tasks_set["failed"] == set()
    assert Everything() in result.tasks_set["completed"]
    assert {FinalTask(), AsExcel(), AsHDF(), AsFeather(), AsParquetDir()} <= result.tasks_set["completed"]
    out = Everything().read()
    expected = pd.DataFrame({"A": [1, 2], "B": [3, 4], "C": [8, 12]})
    pd.testing.assert_frame_equal(out["excel"].drop(columns="Unnamed: 0"), expected)
    pd.testing.assert_frame_equal(out["hdf"], expected)
    pd.testing.assert_frame_equal(out["feather"], expected)
    pd.testing.assert_frame_equal(out["parquet"], expected)
    assert out["notes"] == {"count": 3, "total": 6}
    assert list(out["numbers"]["n"]) == [0, 1, 0, 1, 2]
    assert os.path.isdir(wd / "shop147" / "interim" / "parquet_a=2")
    hashes = json.loads((wd / "shop147" / ".luisy.hash").read_text())
    assert "/shop147/final/FinalTask_a=2.pkl" in hashes
    again = luisy.cli.build(Everything())
    assert again.tasks_set["completed"] == set() and Everything() in again.tasks_set["already_done"]


def test_build_hash_update_and_settings(wd, tmp_path) -> None:
    assert luisy.cli.build(Numbers()).success
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("pandas==1.0.0\n")
    result = luisy.cli.build(Numbers(), hash_update_mode=True, requirements_path=str(reqs))
    assert result.success and result.tasks_set == {}
    assert Config().get_param("requirements_path") == str(reqs)
    assert list(result.recorded) == ["/shop147/interim/Numbers_n=3.pkl"]  # Numbers uses pandas


def test_parse_args_splits_luisy_and_luigi() -> None:
    opts, rest = luisy.cli.parse_args(["--module", "shop147.tasks", "FinalTask", "--a", "3",
                                       "--download", "--working-dir", "/x", "--workers", "2",
                                       "--azure-account-name", "acct", "--spark"])
    assert opts["download"] is True and opts["upload"] is False and opts["working_dir"] == "/x"
    assert opts["azure_account_name"] == "acct" and opts["spark"] is True
    assert "azure_storage_key" not in opts
    assert rest == ["--module", "shop147.tasks", "FinalTask", "--a", "3", "--workers", "2"]


@pytest.fixture
def cli_logging():
    """luisy_run configures the luisy/luisy_sync/luigi loggers for a process: undo it after."""
    import logging

    names = ("luisy", "luisy_sync", "azure", "luigi-interface")
    saved = {n: (lg.level, list(lg.handlers), lg.propagate, list(lg.filters))
             for n in names for lg in [logging.getLogger(n)]}
    yield
    for name, (level, handlers, propagate, filters) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.handlers[:] = handlers
        lg.propagate = propagate
        lg.filters[:] = filters


def test_luisy_run_exits_with_the_run_code(wd, cli_logging) -> None:
    with pytest.raises(SystemExit) as ok:
        luisy.cli.luisy_run(["--module", "shop147.tasks", "AsFeather", "--working-dir", str(wd),
                             "--no-ask"])
    assert ok.value.code == 0
    with pytest.raises(SystemExit) as bad:
        luisy.cli.luisy_run(["--module", "shop147.tasks", "AsFeather", "--a", "9",
                             "--working-dir", str(wd), "--no-ask"])
    assert bad.value.code != 0  # RawTask(a=9) has no data


def test_config_functions(wd, monkeypatch) -> None:
    assert luisy.config.get_default_params()["working_dir"] is None
    assert "working_dir" not in luisy.config.get_default_params(raw=False)
    cfg = Config()
    assert cfg is Config() and cfg.working_dir == str(wd)
    path = os.path.join(str(wd), "shop147", "raw", "x.csv")
    assert luisy.config.remove_working_dir(path) == "/shop147/raw/x.csv"
    assert luisy.config.add_working_dir("/shop147/raw/x.csv") == path
    assert luisy.config.change_working_dir(path, str(wd), "/other") == "/other/shop147/raw/x.csv"
    luisy.config.pass_args({"no_ask": True})
    assert cfg.get_param("no_ask") is True
    luisy.activate_download()
    assert cfg.download and cfg.config["download"] is True
    cfg.check_params()  # the embedded local remote: nothing to complain about
    monkeypatch.setenv("LUISY_AZURE_CONTAINER_NAME", "c1")
    monkeypatch.setattr(luisy.config, "identity_installed", lambda: True)  # with or without the extra
    with pytest.raises(ValueError, match="LUISY_AZURE_ACCOUNT_NAME .--azure-account-name. missing"):
        cfg.init()
    cfg.set_param("azure_container_name", "")  # explicit empty wins over the variable
    cfg.check_params()
    with pytest.raises(ValueError, match="unknown luisy setting"):
        cfg.get_param("nope")
    cfg.reset()
    monkeypatch.setenv("WORKING_DIR", "/from/env")
    assert cfg.working_dir == "/from/env" and not cfg.download
    luisy.set_working_dir(wd)
    assert cfg.working_dir == str(wd)


def test_task_methods(wd) -> None:
    task = AsExcel()
    assert task.get_outdir() == os.path.join(str(wd), "shop147", "interim")
    assert task.get_outfile().endswith(os.path.join("interim", "AsExcel_a=2.xlsx"))
    assert task.get_file_name() == "AsExcel_a=2" and task.get_sub_dir() == ""
    assert task.project_name == "shop147"
    with pytest.raises(ValueError, match="needs to be executed first"):
        task.read()
    assert luisy.cli.build(task).success
    assert list(task.read_input()["C"]) == [8, 12]
    assert list(task.read()["C"]) == [8, 12]
    task.clean()
    assert not task.complete()
    with pytest.raises(ValueError, match="external"):
        RawTask().clean()
    with pytest.raises(ValueError, match="read_input"):
        Everything().read_input()


def test_get_related_instances(wd) -> None:
    for n in (2, 5):
        assert luisy.cli.build(Numbers(n=n)).success
    found = Numbers.get_related_instances()
    assert sorted(t.n for t in found) == [2, 5]
    assert luisy.helpers.get_related_instances(Numbers) == found
    pattern = luisy.helpers.RegexTaskPattern(Numbers)
    assert pattern.root_dir == os.path.join(str(wd), "shop147", "interim")
    assert len(pattern.get_available_files()) == 2

    class Broken(luisy.Task):
        def get_file_name(self):
            raise RuntimeError("no name")

    with pytest.raises(ValueError, match=r"Broken.get_file_name\(\)"):
        Broken.get_related_instances()


def test_get_df_from_parquet_dir(wd) -> None:
    assert luisy.cli.build(AsParquetDir()).success
    df = luisy.helpers.get_df_from_parquet_dir(AsParquetDir().get_outfile())
    assert list(df["C"]) == [8, 12]
    with pytest.raises(ValueError, match="no parquet data"):
        luisy.helpers.get_df_from_parquet_dir(str(wd))


def test_parquetdir_output_needs_a_folder_name() -> None:
    with pytest.raises(ValueError, match="get_folder_name"):
        @luisy.parquetdir_output()
        class NoFolder(luisy.Task):
            pass

    @luisy.parquetdir_output(outdir="fixed/place")
    class Fixed(luisy.Task):
        pass

    assert Fixed().get_folder_name() == "fixed/place"


def test_upload_and_download_one_task(wd, clean_env) -> None:
    task = NoteSummary()
    with pytest.raises(ValueError, match="run it before upload"):
        task.upload()
    assert luisy.cli.build(task).success
    outcome = task.upload()
    key = "/shop147/interim/NoteSummary.json"
    assert outcome.keys_done == (key,)
    remote = clean_env["remote"]
    cloud_hash = json.loads(open(os.path.join(remote, "shop147", ".luisy.hash")).read())
    local_hash = json.loads((wd / "shop147" / ".luisy.hash").read_text())
    assert cloud_hash[key]["hash"] == local_hash[key]
    assert task.upload().keys_done == ()            # already there: not replaced
    assert task.upload(overwrite=True).keys_done == ()  # identical content: nothing to move
    os.remove(task.get_outfile())
    assert task.download().keys_done == (key,)
    assert task.read() == {"count": 3, "total": 6}
    assert AllNumbers().download().keys_done == ()  # not in the cloud: nothing happens
    assert Everything().upload() is None and Everything().download() is None


def test_visualize_draws_and_returns_the_axis(wd) -> None:
    import matplotlib.pyplot as plt

    assert luisy.cli.build(InterimTask()).success
    fig, axes = plt.subplots(ncols=2)
    ax = FinalTask().visualize(ax=axes[1])
    assert ax is axes[1]
    labels = [t.get_text() for t in ax.texts if t.get_text()]
    assert any(label.startswith("FinalTask") for label in labels) and len(labels) == 3
    colours = {t.get_text().split("\n")[0]: t.get_bbox_patch().get_facecolor()
               for t in ax.texts if t.get_text()}
    done = matplotlib.colors.to_rgba(luisy.visualize.STATE_COLORS["done"])
    to_run = matplotlib.colors.to_rgba(luisy.visualize.STATE_COLORS["to run"])
    assert colours["InterimTask"] == done and colours["FinalTask"] == to_run
    ax2 = FinalTask().visualize(parameters_to_exclude=("a",))
    assert "FinalTask" in [t.get_text() for t in ax2.texts]
    plt.close("all")
    dag = luisy.visualize.make_dependency_graph(Everything(), unique_children=False)
    assert dag.number_of_nodes() == 13 and dag.has_edge("Everything\na=2", "FinalTask\na=2")


def test_names_that_changed_say_what_to_use() -> None:
    with pytest.raises(AttributeError, match=r"task.upload\(\)/task.download\(\)"):
        Config().fs
    assert not hasattr(Config(), "fs")


@pytest.mark.parametrize("env,missing", [
    ({}, None),
    ({"LUISY_AZURE_CONTAINER_NAME": "c1"}, ["LUISY_AZURE_ACCOUNT_NAME (--azure-account-name)"]),
    ({"LUISY_AZURE_ACCOUNT_NAME": "a", "LUISY_AZURE_CONTAINER_NAME": "c1"},
     ["LUISY_AZURE_STORAGE_KEY (--azure-storage-key)", "luisy[identity]"]),
    ({"LUISY_AZURE_STORAGE_KEY": "SECRETKEY"},
     ["LUISY_AZURE_ACCOUNT_NAME", "LUISY_AZURE_STORAGE_KEY (--azure-storage-key) given"]),
    ({"LUISY_AZURE_ACCOUNT_NAME": "a", "LUISY_AZURE_STORAGE_KEY": "SECRETKEY"}, None),
    ({"LUISY_AZURE_CONTAINER_NAME": "c1", "AZURE_STORAGE_CONNECTION_STRING": "x"}, None),
    ({"LUISY_AZURE_CONTAINER_NAME": "c1", "LUISY_REMOTE": "file:///r"}, None),
])
def test_azure_settings_problem_without_identity(monkeypatch, env, missing) -> None:
    monkeypatch.setattr(luisy.config, "identity_installed", lambda: False)
    problem = luisy.config.azure_settings_problem(env)
    if missing is None:
        assert problem is None
    else:
        assert problem.startswith("incomplete Azure settings") and "\n" not in problem
        assert all(m in problem for m in missing) and "SECRETKEY" not in problem


def test_flags_overlay_the_environment(clean_env, monkeypatch) -> None:
    monkeypatch.setenv("LUISY_AZURE_CONTAINER_NAME", "fromenv")
    monkeypatch.setenv("LUISY_AZURE_STORAGE_KEY", "envkey")
    Config().update({"azure_container_name": "fromflag", "azure_storage_key": ""})
    env = luisy.config.cloud_environment()
    assert env["LUISY_AZURE_CONTAINER_NAME"] == "fromflag" and "LUISY_AZURE_STORAGE_KEY" not in env


@pytest.mark.parametrize("argv,spark,rest", [
    (["--spark", "FinalTask"], True, ["FinalTask"]),
    (["FinalTask", "--spark", "no"], False, ["FinalTask"]),
    (["--spark=yes", "FinalTask"], True, ["FinalTask"]),
    (["FinalTask"], False, ["FinalTask"]),
])
def test_spark_flag_forms(argv, spark, rest) -> None:
    opts, luigi_argv = luisy.cli.parse_args(argv)
    assert opts["spark"] is spark and luigi_argv == rest
