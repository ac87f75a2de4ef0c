"""Cloud sync for luisy runs: the remote, the cloud ``.luisy.hash`` and output transfers.

Public API (blocking; safe from any thread and from forked luigi workers):

- ``open_session(remote=None)`` / ``current_session()``: the process-wide
  :class:`CloudSession` (store, bridge, current code hashes).
- ``read_cloud_entries(projects)``: output key -> cloud entry.
- ``download_keys(keys)``: fetch outputs, verified, renamed into place when complete.
- ``upload_outputs(tasks_or_keys)``: push outputs whose hash or content differs and
  record them in the cloud hash file (read -> merge -> conditional write).
- ``sync_task_output(task, "upload" | "download", overwrite=False)``: one task's output
  (``Task.upload()`` / ``Task.download()``).
"""

from luisy.cloud.api import (download_keys, download_refs, read_cloud_entries, read_state,
                             record_local_hashes, refresh_hashes, sync_task_output, upload_keyed,
                             upload_outputs)
from luisy.cloud.cloudhash import CloudHashError, CloudState
from luisy.cloud.remote import CloudError, CloudSession, current_session, open_session
from luisy.cloud.transfers import SyncOutcome

__all__ = [
    "CloudError", "CloudHashError", "CloudSession", "CloudState", "SyncOutcome",
    "open_session", "current_session", "read_cloud_entries", "read_state",
    "download_keys", "download_refs", "upload_outputs", "upload_keyed", "refresh_hashes",
    "record_local_hashes", "sync_task_output",
]
