"""LocalStore specifics: plain files, the sqlite object index, atomicity, inter-process conditional writes."""

from __future__ import annotations

import asyncio
import errno
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from luisy_sync.conventions import STORE_DIR, TEMP_NAME
from luisy_sync.errors import ContainerNotFound, NotFoundError, PreconditionFailed, StoreError, UnsafePathError
from luisy_sync.stores.base import DIGEST_KEY, GetResult, ObjectInfo, PutMode
import luisy_sync.stores.local_writes as local_writes_module
import luisy_sync.stores.local_files as local_files
from luisy_sync.stores.local import LocalStore
from luisy_sync.stores.local_files import content_etag
from luisy_sync.stores.small import read_small, write_small


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_objects_are_plain_files(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("a/b/c.txt", b"hello", metadata={DIGEST_KEY: "d" * 32})
    assert (root / "a" / "b" / "c.txt").read_bytes() == b"hello"
    assert local_store.url == root.as_uri() and local_store.url.startswith("file:///")
    visible = [p for p in _files(root) if not p.startswith(STORE_DIR)]
    assert visible == ["a/b/c.txt"]


async def test_files_put_by_hand_are_listed_without_digest(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    (root / "hand").mkdir()
    (root / "hand" / "made.txt").write_bytes(b"12345")
    [info] = await local_store.list()
    assert (info.name, info.size, info.digest) == ("hand/made.txt", 5, None)
    assert (await local_store.get("hand/made.txt", 1, 3)).data == b"234"


@pytest.mark.parametrize("how", ["rewrite", "replace_same_size"])
async def test_metadata_ignored_when_content_replaced_behind_its_back(local_store: LocalStore, how: str) -> None:
    root = Path(local_store.root)
    await local_store.put("f.bin", b"original", metadata={DIGEST_KEY: "a" * 32})
    assert (await local_store.head("f.bin")).digest == "a" * 32
    if how == "rewrite":
        (root / "f.bin").write_bytes(b"other content, longer")
    else:  # same size, new inode: as an editor saving the file would do
        (root / "new.tmp").write_bytes(b"ORIGINAL")
        os.replace(root / "new.tmp", root / "f.bin")
    head = await local_store.head("f.bin")
    assert head.digest is None and head.metadata == {}
    [listed] = await local_store.list()
    assert listed.digest is None
    assert head.etag == listed.etag


async def test_metadata_of_deleted_object_does_not_come_back(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("x", b"abc", metadata={DIGEST_KEY: "b" * 32})
    await local_store.delete("x")
    (root / "x").write_bytes(b"xyz")
    assert (await local_store.head("x")).digest is None


async def test_bookkeeping_and_temp_files_never_listed(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put_block("staged", "b1", b"x")
    await write_small(local_store, "m", b"1")
    (root / "d").mkdir()
    (root / "d" / ".f.luisy-tmp-0123456789abcdef0123456789abcdef").write_bytes(b"partial")
    assert [o.name for o in await local_store.list()] == ["m"]
    for bad in [f"{STORE_DIR}/meta/m.json", "d/.f.luisy-tmp-0123456789abcdef0123456789abcdef"]:
        with pytest.raises(UnsafePathError):
            await local_store.put(bad, b"x")


async def test_failed_commit_leaves_no_temp_file(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(local_store.root)
    await local_store.put("dir/keep", b"k")
    for i in range(3):
        await local_store.put_block("dir/big", f"b{i}", os.urandom(1000))
    real_open = open
    blocks = str(root / STORE_DIR / "blocks")

    def failing_open(path, *args, **kw):  # the last block vanishes mid-commit
        if str(path).startswith(blocks) and not str(path).endswith("idlen"):
            failing_open.calls += 1
            if failing_open.calls == 3:
                raise FileNotFoundError(path)
        return real_open(path, *args, **kw)

    failing_open.calls = 0
    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(StoreError, match="upload the blocks again"):
        await local_store.commit_blocks("dir/big", ["b0", "b1", "b2"])
    monkeypatch.undo()
    assert failing_open.calls == 3
    assert not any(TEMP_NAME.match(p.name) for p in root.rglob("*"))
    assert [o.name for o in await local_store.list()] == ["dir/keep"]


async def test_commit_streams_and_cleans_staging(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    parts = [os.urandom(300_000) for _ in range(8)]
    ids = [f"{i:04d}" for i in range(8)]
    for block_id, part in zip(ids, parts):
        await local_store.put_block("big", block_id, part)
    await local_store.commit_blocks("big", ids)
    assert (root / "big").read_bytes() == b"".join(parts)
    assert list((root / STORE_DIR / "blocks").iterdir()) == []


async def test_small_etag_is_content_based(local_store: LocalStore) -> None:
    etag = await write_small(local_store, "m", b"payload")
    assert etag == content_etag(b"payload") == (await local_store.head("m")).etag
    other = LocalStore(local_store.root)
    assert (await read_small(other, "m"))[1] == etag


async def test_delete_prunes_empty_directories(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("a/b/c", b"1")
    await local_store.put("a/d", b"2")
    await local_store.delete("a/b/c")
    assert not (root / "a" / "b").exists() and (root / "a" / "d").exists()
    assert root.exists()


async def test_name_conflicting_with_directory_is_a_clear_error(local_store: LocalStore) -> None:
    await local_store.put("a/b", b"1")
    with pytest.raises(StoreError, match="conflict"):
        await local_store.put("a", b"2")


async def test_ensure_container_create_and_refuse(tmp_path: Path) -> None:
    missing = LocalStore(tmp_path / "nope", create=False)
    with pytest.raises(ContainerNotFound) as err:
        await missing.ensure_container(create=False)
    assert "\n" not in str(err.value) and str(tmp_path / "nope") in str(err.value)
    with pytest.raises(ContainerNotFound):
        await missing.put("x", b"1")
    with pytest.raises(ContainerNotFound):
        await missing.list()
    assert not (tmp_path / "nope").exists()
    await missing.ensure_container(create=True)
    assert (tmp_path / "nope").is_dir()
    await missing.put("x", b"1")


async def test_a_root_made_by_another_writer_meanwhile_is_taken(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers open the same new store at once: the one that finds the root missing
    and then present (the other just made it) uses it instead of calling it a file."""
    root = tmp_path / "shared"
    real_isdir = os.path.isdir

    def isdir_then_made(path: object) -> bool:
        if os.fspath(path) == str(root) and not root.exists():
            root.mkdir()  # the other writer, right after this one looked
            return False
        return real_isdir(path)

    monkeypatch.setattr(os.path, "isdir", isdir_then_made)
    store = LocalStore(root, create=False)
    await store.ensure_container(create=True)
    monkeypatch.undo()
    await store.put("x", b"1")
    assert (root / "x").read_bytes() == b"1"
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ContainerNotFound, match="is not a directory"):
        await LocalStore(tmp_path / "file", create=False).ensure_container(create=True)


async def test_missing_root_with_create_lists_nothing_and_creates_on_write(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "lazy")
    assert await store.list() == []
    await store.put("x", b"1")
    assert (tmp_path / "lazy" / "x").read_bytes() == b"1"


async def test_list_many_objects_mixed_with_hand_made_files(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    for d in range(10):
        (root / f"d{d}").mkdir()
        for i in range(100):
            (root / f"d{d}" / f"f{i:03d}").write_bytes(b"x")
    for i in range(50):
        await local_store.put(f"d3/p{i:02d}", b"yy", metadata={DIGEST_KEY: f"{i:032x}"})
    listed = await local_store.list()
    assert len(listed) == 1050 and listed[0].name == "d0/f000"
    assert [o.name for o in listed] == sorted(o.name for o in listed)
    with_digest = {o.name: o.digest for o in listed if o.digest}
    assert with_digest == {f"d3/p{i:02d}": f"{i:032x}" for i in range(50)}


def _increment(root: str, count: int, errors: "multiprocessing.Queue[str]") -> None:
    async def run() -> None:
        store = LocalStore(root)
        for _ in range(count):
            while True:
                data, etag = await read_small(store, "counter.json")
                value = json.loads(data)["n"] + 1
                try:
                    await write_small(store, "counter.json", json.dumps({"n": value}).encode(), if_match=etag)
                    break
                except PreconditionFailed:
                    continue

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported to the parent
        errors.put(repr(exc))


def test_conditional_writes_from_four_processes(tmp_path: Path) -> None:
    root = str(tmp_path / "shared")
    asyncio.run(write_small(LocalStore(root), "counter.json", b'{"n": 0}', if_none_match=True))
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_increment, args=(root, 25, errors)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert errors.empty()
    data, _ = asyncio.run(read_small(LocalStore(root), "counter.json"))
    assert json.loads(data) == {"n": 100}


async def test_batch_calls_use_the_modes_and_etags_of_put_and_get(local_store: LocalStore) -> None:
    first = await local_store.put("b/x", b"1")
    await local_store.put("b/there", b"t")
    results = await local_store.put_many([
        ("b/a", b"a", {DIGEST_KEY: "0" * 32}),
        ("b/x", b"22", None, PutMode.update(first.etag or "")),
        ("b/absent", b"y", None, PutMode.update(first.etag or "")),
        ("b/there", b"again", None, PutMode.CREATE),
        ("b/new", b"new", {"k": "v"}, PutMode.CREATE),
    ])
    assert [type(r).__name__ for r in results] == [
        "ObjectInfo", "ObjectInfo", "PreconditionFailed", "PreconditionFailed", "ObjectInfo"]
    names = ["b/a", "b/x", "b/new", "b/there"]
    got = await local_store.get_many(names + ["b/absent"])
    assert isinstance(got[-1], NotFoundError)
    for name, result in zip(names, got):
        assert isinstance(result, GetResult)
        assert result.etag == (await local_store.head(name)).etag == (await local_store.get(name)).etag
    assert [g.data for g in got[:4]] == [b"a", b"22", b"new", b"t"]  # type: ignore[union-attr]
    assert [r.etag for r in results if isinstance(r, ObjectInfo)] == [g.etag for g in got[:3]]  # type: ignore[union-attr]
    assert (await local_store.head("b/a")).digest == "0" * 32
    assert (await local_store.head("b/new")).metadata == {"k": "v"}


async def test_get_many_of_more_names_than_one_index_read_takes(local_store: LocalStore) -> None:
    names = [f"many/{i:04d}" for i in range(1203)]
    await local_store.put_many([(n, n.encode(), {DIGEST_KEY: f"{i:032x}"}) for i, n in enumerate(names)])
    (Path(local_store.root) / "many" / "0007").write_bytes(b"by hand")  # no row: the stat ETag
    listed = {o.name: o.etag for o in await local_store.list("many/")}
    got = await local_store.get_many(names)
    assert [g.etag for g in got] == [listed[n] for n in names]  # type: ignore[union-attr]
    assert got[7].etag.startswith('"s') and got[8].data == b"many/0008"  # type: ignore[union-attr]


async def test_copy_is_a_hard_link_and_writes_keep_the_names_apart(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    source = await local_store.put("cas/0f/1e", b"content", metadata={DIGEST_KEY: "c" * 32})
    copied = await local_store.copy("cas/0f/1e", "proj/out/result.csv")
    src_st, dst_st = os.stat(root / "cas/0f/1e"), os.stat(root / "proj/out/result.csv")
    assert dst_st.st_ino == src_st.st_ino and src_st.st_nlink == 2  # no bytes were copied
    assert (copied.etag, copied.digest, copied.size) == (source.etag, "c" * 32, 7)
    assert copied.modified == src_st.st_mtime  # a link is the very file: its mtime
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["cas/0f/1e", "proj/out/result.csv"]
    # writes replace files by rename: the other name keeps the old file and its metadata
    await local_store.put("cas/0f/1e", b"rewritten", metadata={DIGEST_KEY: "d" * 32})
    assert (root / "proj/out/result.csv").read_bytes() == b"content"
    assert (await local_store.head("proj/out/result.csv")).digest == "c" * 32
    await local_store.copy("cas/0f/1e", "proj/out/result.csv")
    await local_store.put_block("proj/out/result.csv", "b0", b"committed")
    await local_store.commit_blocks("proj/out/result.csv", ["b0"], metadata={DIGEST_KEY: "e" * 32})
    assert (root / "cas/0f/1e").read_bytes() == b"rewritten"
    assert (await local_store.head("cas/0f/1e")).digest == "d" * 32
    assert os.stat(root / "cas/0f/1e").st_nlink == 1


async def test_copy_again_onto_the_same_file_leaves_no_temp_file(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    await local_store.put("a", b"x", metadata={DIGEST_KEY: "a" * 32})
    for _ in range(3):  # renaming a link onto another link of the same file renames nothing
        await local_store.copy("a", "d/b")
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["a", "d/b"]
    assert (await local_store.head("d/b")).digest == "a" * 32


@pytest.mark.parametrize("code", ["EXDEV", "EPERM", "EMLINK"])
async def test_copy_falls_back_to_a_file_copy_without_hard_links(
        local_store: LocalStore, monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    root = Path(local_store.root)
    source = await local_store.put("s/src", b"bytes" * 1000, metadata={DIGEST_KEY: "f" * 32, "k": "v"})

    def no_link(*args: object, **kw: object) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(os, "link", no_link)
    copied = await local_store.copy("s/src", "t/dst")
    assert os.stat(root / "t/dst").st_ino != os.stat(root / "s/src").st_ino
    assert (root / "t/dst").read_bytes() == b"bytes" * 1000
    head = await local_store.head("t/dst")
    assert (head.etag, head.digest, dict(head.metadata)) == (source.etag, "f" * 32, {DIGEST_KEY: "f" * 32, "k": "v"})
    assert copied == head
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["s/src", "t/dst"]


async def test_copy_fails_cleanly_on_other_link_errors(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(local_store.root)
    await local_store.put("s", b"1")

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(StoreError, match="No space left") as err:
        await local_store.copy("s", "d")
    assert "\n" not in str(err.value) and "copy 's' to 'd'" in str(err.value)
    assert _files(root / "s") == [] and not (root / "d").exists()
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["s"]


async def test_copy_publishes_like_a_write(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row of the copy is committed before the rename (the object is never visible
    without its metadata), and a crash before the rename leaves the old object with its
    own metadata: the index never describes a file that is not there."""
    root = Path(local_store.root)
    old = await local_store.put("dst", b"old", metadata={DIGEST_KEY: "0" * 32})
    await local_store.put("src", b"new", metadata={DIGEST_KEY: "1" * 32})
    index = local_store._index
    seen: list[tuple[str, str | None]] = []
    real_replace = os.replace

    def checked_replace(tmp: str, final: str) -> None:
        if final == str(root / "dst"):
            st = os.lstat(tmp)
            row = index.get("dst", st)  # committed already, for the very file renamed
            seen.append(("before", row[4] if row else None))
            assert (root / "dst").read_bytes() == b"old" and index.get("dst", os.lstat(final)) is not None
        real_replace(tmp, final)
        if final == str(root / "dst"):
            row = index.get("dst", os.lstat(final))
            seen.append(("after", row[4] if row else None))

    monkeypatch.setattr(os, "replace", checked_replace)
    await local_store.copy("src", "dst")
    assert seen == [("before", "1" * 32), ("after", "1" * 32)]

    def crash(tmp: str, final: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    await local_store.put("src", b"newer", metadata={DIGEST_KEY: "2" * 32})
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StoreError, match="Input/output error"):
        await local_store.copy("src", "dst")
    monkeypatch.setattr(os, "replace", real_replace)
    head = await local_store.head("dst")
    assert (head.digest, (await local_store.get("dst")).data) == ("1" * 32, b"new")
    assert head.etag != old.etag
    for info in await local_store.list():  # every listed object: its metadata is its file's
        assert info.digest == {"dst": "1" * 32, "src": "2" * 32}[info.name]
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["dst", "src"]


async def test_copy_of_a_hand_made_file_and_refused_names(local_store: LocalStore) -> None:
    root = Path(local_store.root)
    (root / "hand.txt").write_bytes(b"by hand")
    copied = await local_store.copy("hand.txt", "copy.txt")
    assert copied.digest is None and copied == await local_store.head("copy.txt")
    assert (await local_store.get("copy.txt")) == GetResult(b"by hand", copied.etag or "")
    (root / "adir").mkdir()
    (root / "adir" / "f").write_bytes(b"f")
    with pytest.raises(StoreError, match="conflict"):
        await local_store.copy("hand.txt", "adir")
    with pytest.raises(NotFoundError):
        await local_store.copy("adir", "x")
    for bad in [(f"{STORE_DIR}/index.db", "x"), ("hand.txt", f"{STORE_DIR}/x"),
                ("hand.txt", "d/.f.luisy-tmp-0123456789abcdef0123456789abcdef")]:
        with pytest.raises(UnsafePathError):
            await local_store.copy(*bad)
    assert [p for p in _files(root) if not p.startswith(STORE_DIR)] == ["adir/f", "copy.txt", "hand.txt"]


async def test_copy_records_its_row_again_when_a_concurrent_write_pruned_it(
        local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A link keeps the source's (old) mtime, so a concurrent write of dst, which prunes
    the rows of dst that look stale, may drop the copy's row before its rename lands."""
    from luisy_sync.stores import local_index, local_writes
    from luisy_sync.stores.local_index import Change

    root = Path(local_store.root)
    await local_store.put("dst", b"old")
    await local_store.put("src", b"new", metadata={DIGEST_KEY: "1" * 32})
    monkeypatch.setattr(local_index, "STALE_ROW_NS", 0)  # every row not at its name looks stale
    monkeypatch.setattr(local_writes, "STALE_ROW_NS", 0)
    real_replace = os.replace

    def concurrent_write_first(tmp: str, final: str) -> None:
        if final == str(root / "dst"):  # another writer of dst commits its row meanwhile
            local_store._index.apply([Change("dst", keep=os.lstat(final).st_ino)])
            assert local_store._index.get("dst", os.lstat(tmp)) is None  # ours was pruned
        real_replace(tmp, final)

    monkeypatch.setattr(os, "replace", concurrent_write_first)
    copied = await local_store.copy("src", "dst")
    monkeypatch.setattr(os, "replace", real_replace)
    head = await local_store.head("dst")
    assert (head.digest, head.etag) == ("1" * 32, copied.etag) and copied.digest == "1" * 32


async def test_concurrent_copies_and_writes_keep_metadata_true(local_store: LocalStore) -> None:
    """Copies racing with writes of the source and of the destination: every object's
    digest always describes the bytes at its name."""
    from luisy_sync.hashing import hash_bytes

    async def write(name: str, i: int) -> None:
        data = f"{name} version {i}".encode()
        await local_store.put(name, data, metadata={DIGEST_KEY: hash_bytes(data)})

    await write("src", 0)
    for i in range(1, 25):
        await asyncio.gather(write("src", i), local_store.copy("src", "dst"), local_store.copy("src", "dst2"),
                             write("dst2", i))
        for name in ("src", "dst", "dst2"):
            head, got = await local_store.head(name), await local_store.get(name)
            assert (head.digest, head.etag) == (hash_bytes(got.data), got.etag), name
    assert [p for p in _files(Path(local_store.root)) if not p.startswith(STORE_DIR)] == ["dst", "dst2", "src"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.mark.skipif(not local_files.tmpfile_supported(), reason="no O_TMPFILE and /proc here")
async def test_new_names_are_written_unnamed_and_linked_after_their_row(
        local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that holds no file yet gets an unnamed file, linked into place after its
    index row is committed: no temp name appears, and the object is never visible
    without its metadata."""
    root = Path(local_store.root)
    await local_store.put("d/old", b"0", metadata={DIGEST_KEY: "0" * 32})
    await local_store.head("d/old")  # the index's connections are open: only our files count below
    index = local_store._index
    real_apply, real_link = index.apply, local_files.link_unnamed
    names: list[str] = []
    seen: list[str | None] = []

    def apply(changes):
        names.extend(p.name for p in root.rglob("*") if TEMP_NAME.match(p.name))
        assert not (root / "d" / "new").exists()  # nothing is visible before the commit
        real_apply(changes)

    def link(fd: int, path: str) -> None:
        row = index.get(os.path.relpath(path, root).replace(os.sep, "/"), os.fstat(fd))
        seen.append(row[4] if row else None)  # committed already, for the very file linked
        real_link(fd, path)

    monkeypatch.setattr(index, "apply", apply)
    monkeypatch.setattr(local_writes_module, "link_unnamed", link)
    fds = _open_fds()
    results = await local_store.put_many([("d/new", b"new", {DIGEST_KEY: "1" * 32}),
                                          ("e/f/g", b"deep", {DIGEST_KEY: "2" * 32}),
                                          ("d/old", b"replaced", {DIGEST_KEY: "3" * 32})])
    assert not any(isinstance(r, Exception) for r in results)
    # only d/old, which a file holds, is replaced through a temp file and a rename, as before
    assert [n.split(".luisy-tmp-")[0] for n in names] == [".old"] and seen == ["1" * 32, "2" * 32]
    assert _open_fds() == fds
    assert {o.name: (o.digest, (await local_store.get(o.name)).data) for o in await local_store.list()} == {
        "d/new": ("1" * 32, b"new"), "e/f/g": ("2" * 32, b"deep"), "d/old": ("3" * 32, b"replaced")}


@pytest.mark.skipif(not local_files.tmpfile_supported(), reason="no O_TMPFILE and /proc here")
@pytest.mark.parametrize("meanwhile", ["file appears", "directory pruned", "commit fails"])
async def test_unnamed_write_races(local_store: LocalStore, monkeypatch: pytest.MonkeyPatch, meanwhile: str) -> None:
    """Between the unnamed file's row and its link: a file put at the name by another
    writer is replaced (by a rename); the directory pruned by a concurrent delete is made
    again; a failed index commit publishes nothing. No temp file and no fd is left."""
    root = Path(local_store.root)
    index = local_store._index
    real_apply = index.apply

    def apply(changes):
        if meanwhile == "file appears":
            (root / "d" / "x").write_bytes(b"theirs")
        elif meanwhile == "directory pruned":
            (root / "d").rmdir()  # empty: the unnamed file has no directory entry
        else:
            for change in changes:
                change.error, change.done = StoreError("local store index: disk I/O error"), True
            return
        real_apply(changes)

    (root / "d").mkdir()
    await local_store.put("warm", b"")  # the index's connections are open: only our files count below
    await local_store.delete("warm")
    monkeypatch.setattr(index, "apply", apply)
    fds = _open_fds()
    [result] = await local_store.put_many([("d/x", b"ours", {DIGEST_KEY: "9" * 32})])
    monkeypatch.undo()
    assert _open_fds() == fds
    assert not any(TEMP_NAME.match(p.name) for p in root.rglob("*"))
    if meanwhile == "commit fails":
        assert isinstance(result, StoreError) and not (root / "d" / "x").exists()
        return
    assert not isinstance(result, Exception)
    head = await local_store.head("d/x")
    assert (head.digest, head.etag, (await local_store.get("d/x")).data) == ("9" * 32, result.etag, b"ours")


async def test_writes_use_temp_names_where_unnamed_files_are_unsupported(
        local_store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_writes_module, "write_unnamed", lambda path, chunks, fsync: None)
    replaced: list[str] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        replaced.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    await local_store.put_many([("a", b"1", {DIGEST_KEY: "1" * 32}), ("b/c", b"2", None)])
    await local_store.put("d", b"3")
    assert replaced == ["a", "c", "d"] and local_store._unnamed is False
    assert [(o.name, o.digest) for o in await local_store.list()] == [("a", "1" * 32), ("b/c", None), ("d", None)]
