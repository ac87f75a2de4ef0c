"""The LocalStore as a shared remote: symlinks planted inside it, names that used to
collide in its bookkeeping, stores written by the previous layout, one ETag per object.

A symlink inside the store root is refused on every path (read, write, listing,
delete) with one line naming it, and nothing outside the store is read or written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from luisy_sync import UnsafePathError, pull, push
from luisy_sync.stores.base import DIGEST_KEY
from luisy_sync.conventions import STORE_DIR
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.small import read_small, write_small
from rel_helpers import make_files, read_tree, run_cli, store_contents, worker_env


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """A store with an object, a directory symlink ``evil -> outside`` and a file symlink
    ``proj/passwd -> outside/secret``; returns (store root, outside directory)."""
    root, outside = tmp_path / "remote", tmp_path / "outside"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "ok.txt").write_bytes(b"ok")
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not serve me")
    os.symlink(outside, root / "evil")
    os.symlink(outside / "secret", root / "proj" / "passwd")
    return root, outside


def _one_line(exc: BaseException, *needles: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, (needle, text)


async def test_symlinks_inside_the_store_are_refused_on_every_path(planted: tuple[Path, Path]) -> None:
    root, outside = planted
    store = LocalStore(root)
    calls = {
        "write through a linked directory": lambda: store.put("evil/planted", b"x"),
        "small write through a linked directory": lambda: write_small(store, "evil/m.json", b"{}"),
        "stage a block through a linked directory": lambda: store.put_block("evil/big", "b1", b"x"),
        "read a linked file": lambda: store.get("proj/passwd"),
        "small read of a linked file": lambda: read_small(store, "proj/passwd"),
        "head of a linked file": lambda: store.head("proj/passwd"),
        "read through a linked directory": lambda: store.get("evil/secret"),
        "delete through a linked directory": lambda: store.delete("evil/secret"),
        "delete a linked file": lambda: store.delete("proj/passwd"),
        "overwrite a linked file": lambda: store.put("proj/passwd", b"x"),
        "list a tree holding a link": lambda: store.list("proj/"),
        "list below a linked directory": lambda: store.list("evil/"),
        "copy a linked file": lambda: store.copy("proj/passwd", "proj/copied"),
        "copy from a linked directory": lambda: store.copy("evil/secret", "proj/copied"),
        "copy onto a linked file": lambda: store.copy("proj/ok.txt", "proj/passwd"),
        "copy into a linked directory": lambda: store.copy("proj/ok.txt", "evil/copied"),
    }
    for what, call in calls.items():
        with pytest.raises(UnsafePathError) as err:
            await call()
        _one_line(err.value, "symlink", str(root))
    many = await store.get_many(["proj/ok.txt", "proj/passwd"])
    assert many[0].data == b"ok" and isinstance(many[1], UnsafePathError)  # type: ignore[union-attr]
    written = await store.put_many([("proj/new", b"n", None), ("evil/new", b"n", None)])
    assert not isinstance(written[0], Exception) and isinstance(written[1], UnsafePathError)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"do not serve me"
    assert os.path.islink(root / "proj" / "passwd") and os.path.islink(root / "evil")


def test_push_and_pull_refuse_a_store_holding_a_symlink(planted: tuple[Path, Path], tmp_path: Path) -> None:
    root, outside = planted
    src = tmp_path / "src"
    make_files(src, 3, seed=21)
    env = worker_env(tmp_path)
    for args in (["push", str(src), root.as_uri(), "--prefix", "proj"],
                 ["pull", root.as_uri(), str(tmp_path / "dest"), "--prefix", "proj"]):
        proc = run_cli(args, env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "symlink" in lines[0] and "passwd" in lines[0], proc.stderr
    assert not (tmp_path / "dest").exists() or read_tree(tmp_path / "dest") == {}
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_objects_x_and_x_json_slash_y_coexist(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "remote")
    await store.put("x", b"plain", metadata={DIGEST_KEY: "a" * 32})
    await store.put("x.json/y", b"nested", metadata={DIGEST_KEY: "b" * 32})
    await store.put("meta/x.json", b"m", metadata={DIGEST_KEY: "c" * 32})
    listed = {o.name: o.digest for o in await store.list()}
    assert listed == {"x": "a" * 32, "x.json/y": "b" * 32, "meta/x.json": "c" * 32}
    src = tmp_path / "src"
    files = {"x": b"one", "x.json/y": b"two", "x.json/z.json": b"three"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    report = await push(src, store, prefix="p", cache=False)
    assert sorted(report.uploaded) == sorted(files)
    assert await store_contents(store, "p") == files
    await pull(store, tmp_path / "dest", prefix="p", cache=False)
    assert read_tree(tmp_path / "dest") == files


async def test_a_store_of_the_old_layout_is_upgraded_with_its_metadata(tmp_path: Path) -> None:
    """Stores written by the sidecar layout keep their digests (no re-upload) and lose the sidecars."""
    root = tmp_path / "remote"
    objects = {"proj/a.bin": b"alpha", "proj/sub/b.bin": b"beta"}
    for name, data in objects.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        st = os.stat(root / name)
        side = root / STORE_DIR / "meta" / (name + ".json")
        side.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps({"stat": [st.st_size, st.st_mtime_ns, st.st_ino], "etag": '"old"',
                                    "metadata": {DIGEST_KEY: f"digest-of-{name}"}}))
    (root / STORE_DIR / "locks").mkdir()
    store = LocalStore(root)
    listed = {o.name: (o.digest, o.etag) for o in await store.list()}
    assert listed == {n: (f"digest-of-{n}", '"old"') for n in objects}
    assert not (root / STORE_DIR / "meta").exists() and not (root / STORE_DIR / "locks").exists()
    again = {o.name: o.digest for o in await LocalStore(root).list()}
    assert again == {n: f"digest-of-{n}" for n in objects}


async def test_one_etag_per_object_for_written_and_hand_made_files(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalStore(root)
    etag = await write_small(store, "m.json", b"{}")
    await store.put("o.bin", b"data", metadata={DIGEST_KEY: "d" * 32})
    (root / "hand.txt").write_bytes(b"by hand")
    for name in ("m.json", "o.bin", "hand.txt"):
        head = await store.head(name)
        [listed] = [o for o in await store.list() if o.name == name]
        _, small = await read_small(store, name)
        assert head.etag == listed.etag == small, name
    assert (await store.head("m.json")).etag == etag
    _, hand = await read_small(store, "hand.txt")
    await write_small(store, "hand.txt", b"replaced", if_match=hand)
    assert (root / "hand.txt").read_bytes() == b"replaced"
