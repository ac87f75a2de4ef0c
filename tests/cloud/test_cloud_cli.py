"""The luisy command with --download/--upload (subprocesses): the example pipeline end to
end, second machines, concurrent uploaders, dry runs and remote errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.azurite import ACCOUNT, free_port

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = ["--module", "luisy.examples.pipeline", "FinalTask"]


def luisy_cmd(args: list[str], wd: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "luisy.cli", *args, "--working-dir", str(wd), "--no-ask"],
                          capture_output=True, text=True, env=env, timeout=240, **kw)


def _files(wd: Path) -> set[str]:
    return {p.relative_to(wd).as_posix() for p in wd.rglob("*") if p.is_file()} if wd.exists() else set()


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("luisy: error:")]


def test_example_pipeline_uploads_and_a_second_machine_downloads(remote, tmp_path):
    first = luisy_cmd([*EXAMPLE, "--upload", "--download", "--workers", "8",
                       "--json", str(tmp_path / "a.json")], tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "a.json").read_text())
    assert len(report["tasks"]["completed"]) == 7
    assert report["upload"]["files"] == 7 and len(report["upload"]["outputs"]) == 7
    assert "luisy: upload: 7 output(s), 7 file(s)" in first.stdout
    assert re.search(r"in [0-9.]+ s, [0-9.]+ (B|KiB|MiB|GiB)/s", first.stdout)  # the engine's units

    second = luisy_cmd([*EXAMPLE, "--upload", "--download", "--workers", "8",
                        "--json", str(tmp_path / "b.json")], tmp_path / "b")
    assert second.returncode == 0, second.stderr[-2000:]
    report = json.loads((tmp_path / "b.json").read_text())
    assert "completed" not in report["tasks"]  # no task ran
    assert report["download"]["files"] == 1 and report["upload"]["files"] == 0
    assert [d["key"] for d in report["plan"]["download"]] == report["download"]["outputs"]
    assert report["plan"]["download"][0]["bytes"] > 0
    final = [f for f in _files(tmp_path / "b") if "/final/FinalTask" in f]
    assert len(final) == 1
    assert (tmp_path / "b" / final[0]).read_bytes() == (tmp_path / "a" / final[0]).read_bytes()


def test_example_pipeline_partial_download_fetches_directory_outputs(local_remote, tmp_path):
    assert luisy_cmd([*EXAMPLE, "--upload", "--workers", "4"], tmp_path / "a").returncode == 0
    # machine b needs the inputs of FinalTask: a changed n_rows would run all, so remove
    # FinalTask's cloud content instead (its latest entry and its version): it must run,
    # and its inputs come as downloads
    doc = json.loads((local_remote / "luisy_example" / ".luisy.hash").read_text())
    final_key = next(k for k in doc if "/final/FinalTask" in k)
    del doc[final_key]
    (local_remote / "luisy_example" / ".luisy.hash").write_text(json.dumps(doc))
    versions = json.loads((local_remote / "luisy_example" / ".luisy.versions").read_text())
    del versions["versions"][final_key]
    (local_remote / "luisy_example" / ".luisy.versions").write_text(json.dumps(versions))
    proc = luisy_cmd([*EXAMPLE, "--download", "--json", str(tmp_path / "b.json")], tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["tasks"]["completed"] == [t for t in report["tasks"]["completed"] if "FinalTask" in t]
    assert len(report["tasks"]["completed"]) == 1
    assert report["download"]["files"] == 2 and len(report["download"]["outputs"]) == 2
    parquet = [f for f in _files(tmp_path / "b") if f.endswith(".parquet")]
    assert len(parquet) == 1 and "/interim/measurements_seed=7_rows=300/" in parquet[0]


def test_concurrent_uploads_from_two_machines_keep_both_sets_of_entries(pipeline, remote, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ["PYTHONPATH"]]),
           "LUISY_TEST_RUNLOG": str(tmp_path / "runs.log")}
    procs = []
    for n in (5, 6, 7):
        args = [sys.executable, "-m", "luisy.cli", "--module", pipeline.module, "Final", "--n", str(n),
                "--upload", "--workers", "2", "--working-dir", str(tmp_path / f"m{n}"), "--no-ask"]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    check = luisy_cmd(["--module", pipeline.module, "Final", "--n", "5", "--upload", "--download",
                       "--dry-run", "--json", str(tmp_path / "check.json")], tmp_path / "fresh")
    assert check.returncode == 0, check.stderr[-2000:]
    from luisy.cloud import open_session, read_state

    entries = read_state("cloudproj", session=open_session()).entries
    for n in (5, 6, 7):
        assert {k for k in entries if f"_n={n}" in k or f"n={n}" in k} >= {
            f"/cloudproj/raw/Raw_n={n}.pkl", f"/cloudproj/interim/Double_n={n}.pkl",
            f"/cloudproj/final/Final_n={n}.pkl"}
    assert len(entries) == 12


def test_dry_run_changes_nothing_local_or_remote(local_remote, tmp_path):
    assert luisy_cmd([*EXAMPLE, "--upload"], tmp_path / "a").returncode == 0
    before = {p: p.stat().st_mtime_ns for p in local_remote.rglob("*")}
    proc = luisy_cmd([*EXAMPLE, "--upload", "--download", "--dry-run", "--n-rows", "50"], tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tasks to run (7)" in proc.stdout and "uploads (7" in proc.stdout
    assert "dry run: nothing changed" in proc.stdout
    assert not (tmp_path / "b").exists()
    assert {p: p.stat().st_mtime_ns for p in local_remote.rglob("*")} == before
    proc = luisy_cmd([*EXAMPLE, "--download", "--dry-run"], tmp_path / "c")
    assert "downloads (1, " in proc.stdout and not (tmp_path / "c").exists()


def test_default_remote_is_a_local_directory_and_the_run_says_where(no_cloud_env, tmp_path):
    proc = luisy_cmd([*EXAMPLE, "--upload", "--n-rows", "30"], tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-2000:]
    where = tmp_path / "xdg" / "luisy" / "remote" / "projects"
    assert f"luisy: cloud remote: local directory {where}" in proc.stdout
    assert (where / "luisy_example" / ".luisy.hash").is_file()


@pytest.mark.parametrize("problem", ["bad key", "unreachable", "bad url", "corrupt hash file"])
def test_remote_problems_are_one_line_and_no_task_runs(problem, no_cloud_env, azurite_env, monkeypatch,
                                                       tmp_path):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    local_remote = tmp_path / "remote"
    args = [*EXAMPLE, "--download", "--upload"]
    secret = "c2VjcmV0LWtleS10aGF0LWlzLXdyb25nLTEyMzQ1Njc4OTA="
    if problem == "bad key":
        monkeypatch.setenv("LUISY_AZURE_STORAGE_KEY", secret)
    elif problem == "unreachable":
        monkeypatch.setenv("LUISY_AZURE_ENDPOINT", f"http://127.0.0.1:{free_port()}/{ACCOUNT}")
    elif problem == "bad url":
        args += ["--remote", "ftp://somewhere/else"]
    else:
        args += ["--remote", local_remote.as_uri()]
        (local_remote / "luisy_example").mkdir(parents=True)
        (local_remote / "luisy_example" / ".luisy.hash").write_text("[1, 2")
    proc = luisy_cmd(args, tmp_path / "wd")
    assert proc.returncode != 0
    errors = _error_lines(proc)
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and secret not in proc.stderr + proc.stdout
    assert _files(tmp_path / "wd") == set()
    assert "Running" not in proc.stderr  # luigi never started a task
    expected = {"bad key": "rejected the credentials", "unreachable": "cannot reach",
                "bad url": "unsupported store URL", "corrupt hash file": "corrupt"}[problem]
    assert expected in errors[0]


def test_rerun_says_nothing_to_upload_and_json_on_stdout_is_pure_json(local_remote, tmp_path):
    assert luisy_cmd([*EXAMPLE, "--upload", "--n-rows", "40"], tmp_path / "a").returncode == 0
    again = luisy_cmd([*EXAMPLE, "--upload", "--n-rows", "40"], tmp_path / "a")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "luisy: upload: nothing to upload, the cloud is up to date" in again.stdout
    assert "0 output(s)" not in again.stdout
    piped = luisy_cmd([*EXAMPLE, "--upload", "--download", "--n-rows", "40", "--json"], tmp_path / "a")
    assert piped.returncode == 0, piped.stderr[-2000:]
    report = json.loads(piped.stdout)  # the plan and summary lines went to stderr
    assert report["exit_code"] == 0 and report["upload"]["files"] == 0
    assert "luisy plan for FinalTask" in piped.stderr
