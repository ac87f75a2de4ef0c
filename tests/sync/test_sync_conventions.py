"""conventions: the temp-name scheme and who may clean a temp file up, object names, byte formatting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from luisy_sync.conventions import (TEMP_NAME, format_bytes, is_temp_name, object_name, temp_base,
                                    temp_name, temp_path, writer_alive)


def test_temp_names_match_exactly_and_keep_an_extension_on_request() -> None:
    name = temp_name("data.parquet", keep_ext=True)
    assert name.startswith(".data.parquet.luisy-tmp-p") and name.endswith(".parquet")
    assert is_temp_name(name) and temp_base(name) == "data.parquet"
    assert not is_temp_name("notes.luisy-tmp-draft") and not is_temp_name("x.luisy-tmp-123")
    assert is_temp_name(".old.csv.luisy-tmp-" + "a" * 32)  # the pid-less form of old versions
    assert os.path.dirname(temp_path("/d/e/f")) == "/d/e"


def test_long_names_stay_below_name_max() -> None:
    assert len(temp_name("é" * 200).encode("utf-8")) < 255


def test_the_writer_of_a_temp_file_is_known_on_this_host() -> None:
    assert writer_alive(temp_name("x")) is True
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    assert writer_alive(temp_name("x").replace(f"-p{os.getpid()}-", f"-p{gone}-")) is False
    other_host = TEMP_NAME.sub(lambda m: f".x.luisy-tmp-p1-00000000-{'b' * 32}", temp_name("x"))
    assert writer_alive(other_host) is None
    assert writer_alive(".x.luisy-tmp-" + "c" * 32) is None


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                         (5 << 30, "5.0 GiB"), (3 << 40, "3.0 TiB")])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(("prefix", "path", "name"), [("", "a/b", "a/b"), ("p", "a", "p/a"),
                                                     ("/p/q/", "a", "p/q/a"), ("/", "a", "a")])
def test_object_name_joins_a_prefix_without_stray_slashes(prefix: str, path: str, name: str) -> None:
    assert object_name(prefix, path) == name
