"""rclone (Debian's 1.60): ``rclone copy`` with an account SAS URL (the only way it reaches Azurite).

The SAS URL travels in the environment (RCLONE_AZUREBLOB_SAS_URL, the same option as
``--azureblob-sas-url``), never on the command line. Timings include starting rclone.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from benchmarks.azurite import account_sas
from benchmarks.clients import Target

NAME = "rclone"
TIMEOUT = 3600


def unavailable() -> str | None:
    return None if shutil.which("rclone") else "not installed: apt-get install rclone"


def _sas_url(target: Target) -> str:
    return f"{target.endpoint}?{account_sas()}"


def _copy(source: str, dest: str, target: Target, concurrency: int) -> None:
    env = dict(os.environ, RCLONE_CONFIG=os.devnull, RCLONE_AZUREBLOB_SAS_URL=_sas_url(target))
    cmd = ["rclone", "copy", source, dest, "--transfers", str(concurrency),
           "--checkers", str(concurrency), "--log-level", "ERROR"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        raise RuntimeError(f"rclone exited with {proc.returncode}: {last.split('sig=')[0][:200]}")


def upload(src: str, target: Target, concurrency: int) -> None:
    _copy(src, f":azureblob:{target.container}", target, concurrency)


def download(target: Target, dest: str, concurrency: int) -> None:
    _copy(f":azureblob:{target.container}", dest, target, concurrency)
