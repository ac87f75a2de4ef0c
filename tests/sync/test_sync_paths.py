"""join_under: the POSIX fast path gives what the normalizing path gives, and refuses the same names."""

from __future__ import annotations

import os

import pytest

from luisy_sync.errors import UnsafePathError
from luisy_sync.paths import join_under


@pytest.mark.parametrize("root", ["/tmp/x", "/tmp/x/", "/", "//srv", "/tmp/./x/../y", "relative/dir"])
@pytest.mark.parametrize("name", ["a", "a/b/c.txt", "d000/f000001.bin", "a:b", "é/ü.csv"])
def test_join_under_is_the_normalized_path_below_the_root(root: str, name: str) -> None:
    base = os.path.abspath(root)
    assert join_under(root, name) == os.path.abspath(os.path.join(base, *name.split("/")))


@pytest.mark.parametrize("name", ["", "../x", "a/../../x", "a/./b", "a//b", "/etc/passwd", "a\\b", "a\x00b",
                                  os.fsdecode(b"bad\xff.txt")])
def test_join_under_refuses_unsafe_names(name: str) -> None:
    with pytest.raises(UnsafePathError):
        join_under("/tmp/x", name)
