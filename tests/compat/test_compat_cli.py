"""The 1.4.7 shell usage of the project, unchanged: the 1.4.7 flags, luigi's summary on
stdout, the Azure flags against Azurite, one-line errors (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from benchmarks.azurite import ACCOUNT, KEY

from compat_env import AZURE_VARS, HERE

SMILE = "This progress looks :) because there were no failed tasks or missing dependencies"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in AZURE_VARS}
    env.update(PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]),
               LUISY_LOCAL_REMOTE=str(tmp_path / "local-remote"), LUISY_SYNC_CACHE="off")
    env.update(extra)
    return env


def luisy(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "luisy.cli", "--module", "shop147.tasks", *args],
                          env=env, capture_output=True, text=True, timeout=240)


def _machine(tmp_path: Path, name: str) -> Path:
    from shop147.tasks import make_raw_data

    wd = tmp_path / name
    make_raw_data(str(wd))
    return wd


def _outputs(wd: Path) -> set[str]:
    return {str(p.relative_to(wd)) for p in wd.rglob("*") if p.is_file() and "raw" not in p.parts}


def test_147_flags_and_summary_on_stdout(tmp_path: Path) -> None:
    wd = _machine(tmp_path, "wd")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("pandas==2.2.0\n")
    args = ["Everything", "--working_dir", str(wd), "--no-ask", "--requirements-path", str(reqs)]
    first = luisy(args, _env(tmp_path))
    assert first.returncode == 0, first.stderr[-2000:]
    assert SMILE in first.stdout and "Luigi Execution Summary" not in first.stderr
    assert "Scheduled 13 tasks" in first.stdout and "11 ran successfully" in first.stdout
    second = luisy(args, _env(tmp_path))
    assert second.returncode == 0 and SMILE in second.stdout
    assert "Did not run any tasks" in second.stdout and "ran successfully" not in second.stdout
    # the flag is the variable: the same pins from the environment are the same hashes
    third = luisy(args[:-2], _env(tmp_path, LUISY_REQUIREMENTS_PATH=str(reqs)))
    assert "Did not run any tasks" in third.stdout, third.stdout[-2000:]
    fourth = luisy(args[:-2] + ["--dry-run"], _env(tmp_path))
    assert "outdated outputs to delete" in fourth.stdout  # without the pins, pandas tasks differ


def test_failed_run_prints_the_frown_on_stdout(tmp_path: Path) -> None:
    wd = _machine(tmp_path, "wd")
    proc = luisy(["FinalTask", "--a", "7", "--working-dir", str(wd), "--no-ask"], _env(tmp_path))
    assert proc.returncode != 0
    assert "This progress looks :| because there were missing external dependencies" in proc.stdout


def test_json_on_stdout_stays_pure_json(tmp_path: Path) -> None:
    wd = _machine(tmp_path, "wd")
    proc = luisy(["FinalTask", "--working-dir", str(wd), "--no-ask", "--json"], _env(tmp_path))
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["exit_code"] == 0
    assert SMILE in proc.stderr


@pytest.mark.azurite
def test_azure_flags_upload_then_second_machine_downloads(azurite, tmp_path: Path) -> None:
    container = "c" + uuid.uuid4().hex[:12]
    env = _env(tmp_path, LUISY_AZURE_ENDPOINT=azurite.endpoint)
    flags = ["--azure-account-name", ACCOUNT, "--azure-storage-key", KEY,
             "--azure-container-name", container]
    wd_a = _machine(tmp_path, "a")
    up = luisy(["FinalTask", "--working-dir", str(wd_a), "--no-ask", "--upload", *flags], env)
    assert up.returncode == 0, up.stderr[-2000:]
    assert f"container '{container}'" in up.stdout and SMILE in up.stdout
    wd_b = tmp_path / "b"
    down = luisy(["FinalTask", "--working-dir", str(wd_b), "--no-ask", "--download", *flags], env)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "Did not run any tasks" in down.stdout
    assert _outputs(wd_b) == {"shop147/final/FinalTask_a=2.pkl", "shop147/.luisy.hash", "shop147/.luisy.parts"}
    # the variables say the same as the flags
    env_vars = dict(env, LUISY_AZURE_ACCOUNT_NAME=ACCOUNT, LUISY_AZURE_STORAGE_KEY=KEY,
                    LUISY_AZURE_CONTAINER_NAME=container)
    wd_c = tmp_path / "c"
    again = luisy(["FinalTask", "--working-dir", str(wd_c), "--no-ask", "--download"], env_vars)
    assert again.returncode == 0 and "Did not run any tasks" in again.stdout
    # a flag wins over its variable: another container has nothing, so the task must run
    other = dict(env_vars, LUISY_AZURE_CONTAINER_NAME="c" + uuid.uuid4().hex[:12])
    wd_d = _machine(tmp_path, "d")
    flagged = luisy(["FinalTask", "--working-dir", str(wd_d), "--no-ask", "--download",
                     "--azure-container-name", container], other)
    assert "Did not run any tasks" in flagged.stdout
    for proc in (up, down, again, flagged):
        assert KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("flags,missing", [
    (["--azure-container-name", "box1"], "LUISY_AZURE_ACCOUNT_NAME (--azure-account-name)"),
    (["--azure-storage-key", KEY], "LUISY_AZURE_ACCOUNT_NAME (--azure-account-name)"),
])
def test_incomplete_azure_settings_stop_before_any_task(tmp_path: Path, flags, missing) -> None:
    wd = _machine(tmp_path, "wd")
    for direction in ("--upload", "--download"):
        proc = luisy(["FinalTask", "--working-dir", str(wd), "--no-ask", direction, *flags],
                     _env(tmp_path))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "incomplete Azure settings" in lines[0] and missing in lines[0]
        assert KEY not in proc.stdout + proc.stderr
        assert _outputs(wd) == set()


def test_account_without_key_or_identity_names_the_key(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("azure.identity") is not None:
        pytest.skip("azure-identity is installed: an account alone signs in with it")
    wd = _machine(tmp_path, "wd")
    proc = luisy(["FinalTask", "--working-dir", str(wd), "--no-ask", "--upload",
                  "--azure-account-name", "acct", "--azure-container-name", "box1"], _env(tmp_path))
    assert proc.returncode == 2 and "LUISY_AZURE_STORAGE_KEY (--azure-storage-key)" in proc.stderr


def test_spark_without_pyspark_is_one_line(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pyspark") is not None:
        pytest.skip("pyspark is installed here")
    wd = _machine(tmp_path, "wd")
    for args in (["FinalTask", "--spark"], ["--module", "shop147.spark_tasks", "CopyOrders"]):
        proc = luisy([*args, "--working-dir", str(wd), "--no-ask"], _env(tmp_path))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-1500:]
        assert "pip install 'luisy[spark]'" in lines[0]
        assert _outputs(wd) == set()


def test_visualize_writes_a_picture_and_runs_nothing(tmp_path: Path) -> None:
    wd = _machine(tmp_path, "wd")
    png, svg = tmp_path / "tree.png", tmp_path / "tree.svg"
    for path in (png, svg):
        proc = luisy(["Everything", "--working-dir", str(wd), "--visualize", str(path)], _env(tmp_path))
        assert proc.returncode == 0, proc.stderr[-1500:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:400]
    assert _outputs(wd) == set()
    text = luisy(["FinalTask", "--visualize"], _env(tmp_path))
    assert text.stdout.splitlines() == ["FinalTask(a=2)", "  └─ InterimTask(a=2)", "    └─ RawTask(a=2)"]
    bad = luisy(["FinalTask", "--working-dir", str(wd), "--visualize", str(tmp_path / "t.gif")],
                _env(tmp_path))
    assert bad.returncode == 2 and ".png" in bad.stderr


@pytest.mark.azurite
def test_a_wrong_key_flag_is_one_line_and_never_printed(azurite, tmp_path: Path) -> None:
    import base64

    wrong = base64.b64encode(b"not the account key, but base64" * 2).decode()
    wd = _machine(tmp_path, "wd")
    report = tmp_path / "report.json"
    proc = luisy(["FinalTask", "--working-dir", str(wd), "--no-ask", "--upload", "--json", str(report),
                  "--azure-account-name", ACCOUNT, "--azure-storage-key", wrong,
                  "--azure-container-name", "c" + uuid.uuid4().hex[:12]],
                 _env(tmp_path, LUISY_AZURE_ENDPOINT=azurite.endpoint))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "credentials" in errors[0], proc.stderr[-1500:]
    for text in (proc.stdout, proc.stderr, report.read_text() if report.exists() else ""):
        assert wrong not in text and wrong[:24] not in text
    assert _outputs(wd) == set()
