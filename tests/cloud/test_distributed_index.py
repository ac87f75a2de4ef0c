"""CloudShare: cached cloud lookups, one-task uploads and verified input fetches
(in-process, against a local directory remote); the scheduler-flag helpers."""

from __future__ import annotations

import os
import sys
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_pipeline"))

import distpipe  # noqa: E402

from luisy.cloud.cloudrun import CloudOptions  # noqa: E402
from luisy.cloud.distributed import (CloudShare, is_distributed, uses_central_scheduler,  # noqa: E402
                                     wanted_outputs)
from luisy.cloud.session import open_session  # noqa: E402
from luisy.cloud.cache import StateCache  # noqa: E402
from luisy.errors import CloudError  # noqa: E402
from luisy.hashfile import CloudEntry  # noqa: E402
from luisy.graph import output_ref  # noqa: E402
from luisy.hashfile import read_hash_file  # noqa: E402


@pytest.mark.parametrize("argv, central", [
    (["--module", "m", "T", "--scheduler-host", "127.0.0.1"], True),
    (["T", "--scheduler-url=http://127.0.0.1:8082"], True),
    (["T", "--scheduler-host", "h", "--local-scheduler"], False),
    (["T", "--local-scheduler"], False),
    (["T", "--workers", "4"], False),
])
def test_central_scheduler_is_recognised(argv, central):
    assert uses_central_scheduler(argv) is central


@pytest.mark.parametrize("download, upload, argv, distributed", [
    (True, True, ["T", "--scheduler-host", "h"], True),
    (False, True, ["T", "--scheduler-host", "h"], True),
    (False, False, ["T", "--scheduler-host", "h"], False),
    (True, True, ["T", "--local-scheduler"], False),
])
def test_distributed_only_for_central_scheduler_with_cloud(download, upload, argv, distributed):
    cloud = CloudOptions(download=download, upload=upload)
    local = not uses_central_scheduler(argv)
    assert is_distributed(cloud, local_scheduler=local) is distributed
    assert is_distributed(None, local_scheduler=local) is False


@pytest.mark.parametrize("entry, code_hash, external, expected", [
    ({"hash": "h1", "digest": "d", "size": 1}, "h1", False, True),
    ({"hash": "h1", "digest": "d", "size": 1}, "h2", False, False),
    ({"hash": "h1", "files": {}, "size": 0}, "h1", False, True),
    ({"hash": "h1"}, "h1", False, False),  # a 1.4.7 entry names no content to verify
    ({"hash": "old", "digest": "d", "size": 1}, "h2", True, True),  # external data: any hash
    (None, "h1", False, False),
])
def test_is_current(entry, code_hash, external, expected):
    parsed = CloudEntry.from_json(entry) if entry is not None else None
    names_content = parsed is not None and not parsed.legacy
    assert (names_content and parsed.is_current(code_hash, external)) is expected


def test_wanted_outputs_looks_through_wrappers(machines, local_remote):
    machines("m")

    class Both(distpipe.luisy.WrapperTask):
        def requires(self):
            return [distpipe.Half(half=0), distpipe.Total()]

    got = wanted_outputs([Both()])
    assert sorted(str(t) for t in got) == ["Half(half=0)", "Total()"]


def test_lookups_are_cached_and_revalidated_by_etag(machines, local_remote):
    machines("m1")
    session = open_session()
    writer = CloudShare(session, StateCache(session, ttl=60.0))
    numbers, part0, part1 = distpipe.Numbers(), distpipe.Part(part=0), distpipe.Part(part=1)

    assert not writer.in_cloud(numbers)
    numbers.write(list(range(distpipe.N_NUMBERS)))
    assert writer.upload(numbers) == "/distdemo/raw/Numbers.pkl"
    before = (writer.cache.stats.heads, writer.cache.stats.reads)
    assert writer.in_cloud(numbers)  # this process wrote it: no request
    assert (writer.cache.stats.heads, writer.cache.stats.reads) == before

    reader = CloudShare(session, StateCache(session, ttl=60.0))
    assert reader.in_cloud(numbers)
    assert (reader.cache.stats.heads, reader.cache.stats.reads) == (0, 1)
    assert not reader.in_cloud(part0)  # not the latest: the versions index is read once
    assert (reader.cache.stats.heads, reader.cache.stats.reads) == (0, 2)
    assert not reader.in_cloud(part0)  # negative, but younger than the TTL: from the cache
    assert (reader.cache.stats.heads, reader.cache.stats.reads) == (0, 2)
    reader.cache.ttl = 0.0
    assert not reader.in_cloud(part0)  # revalidated: a HEAD each, same ETags, no re-read
    assert (reader.cache.stats.heads, reader.cache.stats.reads) == (2, 2)

    part0.write(123)
    writer.upload(part0)
    assert reader.in_cloud(part0)  # HEAD saw a new ETag: read again
    assert (reader.cache.stats.heads, reader.cache.stats.reads) == (3, 3)
    assert reader.in_cloud(numbers) and not reader.in_cloud(part1)


def test_fetch_downloads_verified_and_records_the_hash(machines, local_remote):
    m1 = machines("m1")
    session = open_session()
    index = CloudShare(session)
    numbers = distpipe.Numbers()
    numbers.write(list(range(distpipe.N_NUMBERS)))
    index.upload(numbers)
    numbers_ref = output_ref(numbers)
    code_hash = index.code_hash(numbers, numbers_ref)
    assert numbers_ref.key == "/distdemo/raw/Numbers.pkl"

    m2 = machines("m2")
    other = CloudShare(open_session())
    with pytest.raises(CloudError, match="neither local nor in the cloud"):
        other.fetch([distpipe.Part(part=0)], wait=0.0)
    assert not (m2 / "distdemo" / "interim").exists()

    assert other.fetch([distpipe.Numbers()]) == ["/distdemo/raw/Numbers.pkl"]
    assert distpipe.Numbers().output().read() == list(range(distpipe.N_NUMBERS))
    assert read_hash_file(str(m2 / "distdemo" / ".luisy.hash")) == {numbers_ref.key: code_hash}
    assert other.fetch([distpipe.Numbers()]) == []  # present now: nothing to do
    assert (m1 / "distdemo" / "raw" / "Numbers.pkl").read_bytes() == \
        (m2 / "distdemo" / "raw" / "Numbers.pkl").read_bytes()


def test_fetch_refuses_content_that_does_not_match_its_digest(machines, local_remote):
    machines("m1")
    index = CloudShare(open_session())
    numbers = distpipe.Numbers()
    numbers.write([1, 2, 3])
    index.upload(numbers)
    blob = local_remote / "distdemo" / "raw" / "Numbers.pkl"
    blob.write_bytes(blob.read_bytes()[:-1] + b"X")  # same size, other bytes

    m2 = machines("m2")
    with pytest.raises(CloudError, match="download of input /distdemo/raw/Numbers.pkl failed") as err:
        CloudShare(open_session()).fetch([distpipe.Numbers()], wait=0.0)
    assert "does not match its digest" in str(err.value)
    assert not (m2 / "distdemo" / "raw" / "Numbers.pkl").exists()


@pytest.fixture
def run_counter(tmp_path, monkeypatch):
    """The file distpipe tasks append their id to on every ``run()`` (``$DIST_COUNTER``)."""
    counter = tmp_path / "runs.txt"
    monkeypatch.setenv("DIST_COUNTER", str(counter))
    return counter


def _publish_numbers_from(machines) -> None:
    """Machine m1 makes Numbers and uploads it with its cloud hash entry."""
    machines("m1")
    distpipe.Numbers().write(list(range(distpipe.N_NUMBERS)))
    CloudShare(open_session()).upload(distpipe.Numbers())


def test_build_against_luigid_shares_through_the_cloud(machines, local_remote, run_counter):
    """``luisy.build(..., local_scheduler=False, upload=True)`` uses distributed workers
    (forked task processes here); a second machine then runs nothing and gets Total."""
    import luisy
    from dist_harness import start_luigid

    with start_luigid(done_cooldown=1) as luigid:
        params = dict(local_scheduler=False, scheduler_host="127.0.0.1",
                      scheduler_port=luigid.port, workers=2, upload=True)
        machines("m1")
        first = luisy.build(distpipe.Total(), **params)
        assert first.success
        assert len(run_counter.read_text().split()) == 20
        entries = CloudShare(open_session()).cache.entries("distdemo", max_age=0.0)
        assert len(entries) == 20

        import time
        time.sleep(1.5)  # past luigid's cooldown: luigi alone would rerun every task
        m2 = machines("m2")
        second = luisy.build(distpipe.Total(), **params)
        assert second.success
        assert len(run_counter.read_text().split()) == 20
        assert distpipe.Total().output().read() == distpipe.expected_total()
        assert not (m2 / "distdemo" / "interim").exists()  # only what was asked for


def _run_task_process(task, index):
    """Run ``task`` the way a distributed worker does, in this process; luigi's result."""
    import queue

    import luigi.worker
    from luigi.scheduler import Scheduler

    from luisy.cloud.distributed import DistributedTaskProcess

    results: queue.Queue = queue.Queue()
    reporter = luigi.worker.TaskStatusReporter(Scheduler(), task.task_id, "w", None)
    DistributedTaskProcess(index, None, task, "w", results, reporter).run()
    task_id, status, expl, _missing, _new = results.get_nowait()
    assert task_id == task.task_id
    return status, expl


def test_task_process_fetches_inputs_runs_and_uploads_before_done(machines, local_remote,
                                                                   run_counter):
    _publish_numbers_from(machines)

    m2 = machines("m2")
    index = CloudShare(open_session())
    status, expl = _run_task_process(distpipe.Part(part=2), index)
    assert status == "DONE", expl
    assert run_counter.read_text().split() == [distpipe.Part(part=2).task_id]
    assert (m2 / "distdemo" / "raw" / "Numbers.pkl").exists()  # input fetched
    entry = CloudShare(open_session()).cache.entries("distdemo", max_age=0.0)["/distdemo/interim/Part_part=2.pkl"]
    assert entry.files[0].digest and entry.code_hash == index.code_hash(
        distpipe.Part(part=2), output_ref(distpipe.Part(part=2)))


def test_task_process_fails_when_an_input_is_nowhere(machines, local_remote, run_counter):
    machines("m1")
    status, expl = _run_task_process(distpipe.Part(part=2), CloudShare(open_session()))
    assert status == "FAILED"
    assert "Unfulfilled dependency" in expl and "Numbers.pkl" in expl
    assert not run_counter.exists()


def test_task_published_meanwhile_is_fetched_not_run(machines, local_remote, run_counter):
    _publish_numbers_from(machines)

    m2 = machines("m2")
    status, expl = _run_task_process(distpipe.Numbers(), CloudShare(open_session()))
    assert status == "DONE", expl
    assert not run_counter.exists()  # run() never called
    assert distpipe.Numbers().output().read() == list(range(distpipe.N_NUMBERS))
    assert (m2 / "distdemo" / "raw" / "Numbers.pkl").exists()
