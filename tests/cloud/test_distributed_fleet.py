"""Scale-out end to end: luigid on loopback, three luisy machines, one Azurite container.

The pipeline (tests/cloud/dist_pipeline/distpipe.py) has 20 tasks in a fan-out /
fan-in shape; every run() appends its task id to a shared counter file.
"""

from __future__ import annotations

import os
import pickle
import sys

import anyio
import pytest
import xxhash

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "dist_pipeline"))

import distpipe  # noqa: E402
from dist_harness import run_fleet, start_luigid  # noqa: E402

from luisy.config import Config  # noqa: E402
from luisy_sync.stores import store_from_env  # noqa: E402
from luisy_sync.stores.small import read_small  # noqa: E402

pytestmark = pytest.mark.timeout(170)

FINAL = "distdemo/final/Total.pkl"
N_TASKS = 20


def current_hashes(working_dir: str) -> dict[str, str]:
    """Output key -> current code hash of every task of the pipeline."""
    from luisy.graph import build_graph
    from luisy.run import compute_code

    config = Config()
    before = config.get_param("working_dir")
    config.set_param("working_dir", working_dir)
    try:
        return {key: code.hash for key, code in compute_code(build_graph(distpipe.Total())).items()}
    finally:
        config.set_param("working_dir", before)


def read_cloud(names: list[str]) -> tuple[dict, dict[str, bytes]]:
    """The project's cloud ``.luisy.hash`` and the bytes of the named blobs."""
    import json

    async def go() -> tuple[dict, dict[str, bytes]]:
        async with store_from_env() as store:
            raw, _etag = await read_small(store, "distdemo/.luisy.hash")
            blobs = {n: (await store.get(n)).data for n in names}
        return json.loads(raw), blobs

    return anyio.run(go)


def final_output(working_dir: str) -> object:
    with open(os.path.join(working_dir, FINAL), "rb") as fh:
        return pickle.load(fh)


def log_tail(run) -> str:
    return "\n".join(f"--- {w.working_dir} (exit {w.returncode})\n{w.output[-3000:]}"
                     for w in run.workers)


def test_three_machines_run_each_task_once(no_cloud_env, azurite_env, tmp_path):
    with start_luigid(done_cooldown=3) as luigid:
        fleet = run_fleet(str(tmp_path / "fleet"), luigid.port, 3, workers=2, sleep=0.3)
        assert [w.returncode for w in fleet.workers] == [0, 0, 0], log_tail(fleet)
        # every task ran exactly once across the three machines
        assert len(fleet.counts) == N_TASKS, log_tail(fleet)
        assert set(fleet.counts.values()) == {1}, fleet.counts
        # more than one machine did work (the scheduler spread the tasks)
        ran_here = [w.output.count("uploaded /distdemo/") for w in fleet.workers]
        assert sum(ran_here) == N_TASKS and sum(1 for n in ran_here if n) >= 2, ran_here
        # every machine asked for Total and has the correct result; outputs went up as
        # their tasks finished, so the end-of-run upload found nothing left to push
        for w in fleet.workers:
            assert final_output(w.working_dir) == distpipe.expected_total()
            assert "luisy: upload: nothing to upload, the cloud is up to date" in w.output, w.output[-2000:]
        # the cloud hash file names every output with its current hash and a true digest
        hashes = current_hashes(fleet.workers[0].working_dir)
        assert len(hashes) == N_TASKS
        manifest, blobs = read_cloud([k.strip("/") for k in hashes])
        assert set(manifest) == set(hashes)
        for key, code_hash in hashes.items():
            entry = manifest[key]
            data = blobs[key.strip("/")]
            assert entry["hash"] == code_hash, key
            assert entry["digest"] == xxhash.xxh3_128(data).hexdigest(), key
            assert entry["size"] == len(data), key

        # A machine joining after luigid's cooldown, without --download: luigi alone
        # would run all 20 tasks again; the cloud counts as complete, so none runs.
        anyio.run(anyio.sleep, 3.5)
        late = run_fleet(str(tmp_path / "fleet"), luigid.port, 1, workers=1, sleep=0.0,
                         flags=("--upload",), machine_offset=3)
        assert late.workers[0].returncode == 0, log_tail(late)
        assert sum(late.counts.values()) == N_TASKS, late.counts  # same counter file: no new runs
        assert final_output(late.workers[0].working_dir) == distpipe.expected_total()
        assert "fetched 1 output(s) made on other machines" in late.workers[0].output


def test_luigid_alone_reruns_done_tasks_a_machine_lacks(tmp_path):
    """The luigi fact the design rests on: without the cloud, a machine whose disk
    lacks an output makes luigid run the task again once the cooldown has passed."""
    with start_luigid(done_cooldown=1) as luigid:
        first = run_fleet(str(tmp_path / "a"), luigid.port, 1, workers=1, sleep=0.0, flags=())
        assert first.workers[0].returncode == 0, log_tail(first)
        anyio.run(anyio.sleep, 1.5)
        second = run_fleet(str(tmp_path / "b"), luigid.port, 1, workers=1, sleep=0.0, flags=())
        assert second.workers[0].returncode == 0, log_tail(second)
        assert sum(first.counts.values()) == N_TASKS
        assert sum(second.counts.values()) == N_TASKS


def test_outputs_made_before_the_fleet_are_shared_not_rerun(no_cloud_env, azurite_env, tmp_path):
    """A machine with finished outputs that never went to the cloud joins: it uploads
    them when it reports them DONE (upstream ones too), so later machines never rerun."""
    base = str(tmp_path / "fleet")
    alone = run_fleet(base, None, 1, workers=1, sleep=0.0, flags=())  # machine0, no cloud
    assert alone.workers[0].returncode == 0, log_tail(alone)
    assert sum(alone.counts.values()) == N_TASKS
    with start_luigid() as luigid:
        first = run_fleet(base, luigid.port, 1, workers=2, sleep=0.0, flags=("--upload",))
        assert first.workers[0].returncode == 0, log_tail(first)
        assert f"shared {N_TASKS} output(s) this machine had before the run" in first.workers[0].output
        manifest, _ = read_cloud([])
        assert len(manifest) == N_TASKS
        fleet = run_fleet(base, luigid.port, 2, workers=2, sleep=0.0, flags=("--upload",),
                          machine_offset=1)
    assert [w.returncode for w in fleet.workers] == [0, 0], log_tail(fleet)
    assert sum(fleet.counts.values()) == N_TASKS, fleet.counts  # nothing ran again
    for w in fleet.workers:
        assert final_output(w.working_dir) == distpipe.expected_total()


def test_a_failing_task_ends_every_machine_with_an_error(no_cloud_env, azurite_env, tmp_path):
    """No machine waits forever for work that cannot happen; nothing downstream runs."""
    with start_luigid() as luigid:
        fleet = run_fleet(str(tmp_path / "fleet"), luigid.port, 3, workers=2, sleep=0.1,
                          env={"DIST_FAIL": "Half"}, timeout=90)
    assert all(w.returncode != 0 for w in fleet.workers), log_tail(fleet)
    assert set(fleet.counts.values()) == {1}, fleet.counts
    assert fleet.counts["Total__99914b932b"] == 0
    assert sum(1 for t in fleet.counts if t.startswith("Half_")) == 2
    for w in fleet.workers:
        assert not os.path.exists(os.path.join(w.working_dir, FINAL))
