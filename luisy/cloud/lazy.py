"""``luisy.activate_download()``: reading a task's missing output fetches it from the cloud.

The output is downloaded (verified against its cloud digest, renamed into place when
complete) only when the cloud hash of its key equals the task's current code hash;
its hash is then recorded in the local ``.luisy.hash``.
"""

from __future__ import annotations

import os

import luigi

from luisy.cloud.api import download_refs, read_state, record_local_hashes
from luisy.cloud.remote import current_session


def fetch_output(task: luigi.Task) -> bool:
    """Download ``task``'s output if it is missing locally and current in the cloud.

    Returns True when the output was downloaded. Raises CloudError when the remote is
    unusable or the download fails.
    """
    from luisy.codehash import compute_task_hashes
    from luisy.graph import output_ref

    ref = output_ref(task)
    if ref is None or os.path.exists(ref.path):
        return False
    session = current_session()
    if not session.check(create=False):
        return False
    state = read_state([ref.project], session=session)
    entry = state.entries.get(ref.key)
    if entry is None:
        return False
    code_hash = compute_task_hashes([task])[task]
    if entry.get("hash") != code_hash and not isinstance(task, luigi.ExternalTask):
        return False
    outcome = download_refs({ref.key: ref.is_dir}, state, session=session, record=False)
    if not outcome.ok:
        from luisy.cloud.remote import CloudError

        key, reason = outcome.keys_failed[0]
        raise CloudError(f"download of {key} failed: {reason}")
    record_local_hashes({ref.key: code_hash})
    return True
