"""atomic: the one way both packages publish a file or directory under its final name."""

from __future__ import annotations

import os

import pytest
import xxhash

from luisy_sync.atomic import atomic_dir, atomic_path, publish, remove_path, write_atomic, write_temp
from luisy_sync.blockio import read_expected
from luisy_sync.conventions import is_temp_name


def _names(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_write_atomic_replaces_and_keeps_the_mode_only_when_asked(tmp_path) -> None:
    final = tmp_path / "f.bin"
    final.write_bytes(b"old")
    final.chmod(0o600)
    write_atomic(str(final), [b"new", b"er"], keep_mode=True)
    assert final.read_bytes() == b"newer" and (final.stat().st_mode & 0o777) == 0o600
    write_atomic(str(final), [b"x"], mode=0o640)
    assert (final.stat().st_mode & 0o777) == 0o640 & ~_umask()
    assert _names(tmp_path) == ["f.bin"]


def test_write_temp_hashes_what_it_writes_and_leaves_nothing_on_failure(tmp_path) -> None:
    hasher = xxhash.xxh3_64()
    tmp, st = write_temp(str(tmp_path / "d" / "f"), [b"ab", b"c"], hasher=hasher)
    assert is_temp_name(os.path.basename(tmp)) and st.st_size == 3
    assert hasher.hexdigest() == xxhash.xxh3_64_hexdigest(b"abc")
    publish(tmp, str(tmp_path / "d" / "f"))
    assert _names(tmp_path / "d") == ["f"]

    def broken():
        yield b"part"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_temp(str(tmp_path / "d" / "g"), broken())
    assert _names(tmp_path / "d") == ["f"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path) -> None:
    final = tmp_path / "table.csv"
    final.write_text("old")
    with pytest.raises(ValueError), atomic_path(str(final)) as tmp:
        assert tmp.endswith(".csv")
        with open(tmp, "w") as fh:
            fh.write("half")
        raise ValueError("writer failed")
    assert final.read_text() == "old" and _names(tmp_path) == ["table.csv"]
    with pytest.raises(OSError, match="nothing was written"), atomic_path(str(final)):
        pass
    assert final.read_text() == "old"


def test_atomic_dir_swaps_a_whole_directory(tmp_path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale").write_text("1")
    with atomic_dir(str(final)) as tmp:
        with open(os.path.join(tmp, "part-0"), "w") as fh:
            fh.write("2")
    assert _names(final) == ["part-0"] and _names(tmp_path) == ["out"]
    assert remove_path(str(final)) and not remove_path(str(final))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(("content", "expected", "got"), [
    (b"x" * 10, 10, 10),      # the expected size: one read
    (b"x" * 12, 10, 11),      # grew: the byte of room shows it
    (b"x" * 7, 10, 7),        # shrank
    (b"", 0, 0),
    (b"new", 0, 1),           # an empty file that grew is still caught
])
def test_read_expected_tells_the_expected_size_from_a_file_that_changed(tmp_path, monkeypatch, content: bytes,
                                                                        expected: int, got: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    calls = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, views, offset: calls.append(offset) or real(fd, views, offset))
    view = memoryview(bytearray(expected + 1))
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_expected(fd, view, expected) == got
    finally:
        os.close(fd)
    assert bytes(view[:got]) == content[:got]
    assert len(calls) == (1 if got >= expected or got == 0 else 2)
