"""Cloud sync for luisy runs: one verb per operation (blocking; safe from any thread and
from forked luigi workers).

- ``open_session(remote=None)`` / ``current_session()``: the process-wide
  :class:`CloudSession` (store, bridge, current code hashes).
- ``read_state(projects)``: the cloud entries (:class:`~luisy.hashfile.CloudEntry`), the
  stored versions by code hash (:mod:`luisy.versions`) and the folder listing of some projects.
- ``download(outputs_or_keys)``: fetch outputs (the version with the current code hash when
  stored, else the latest upload), verified, renamed into place when complete.
- ``upload(tasks_or_keys_or_outputs)``: store the outputs whose version is not stored yet
  (content by digest, the path view by server-side copy) and record them in the versions
  index and the cloud hash file (read -> merge -> conditional write).
- ``refresh_hashes(outputs, state)``: hash-update mode on cloud entries.
- ``collect_garbage(grace_days=7, apply=False)``: ``luisy gc``.

Modules: ``session`` (the remote; the only user of the bridge), ``state`` (the cloud hash
files and versions indexes: reading, conditional writes), ``cache`` (the per-process,
ETag-revalidated cache of them), ``uploadplan`` (what an upload sends; pure), ``sync``
(the transfers), ``verbs`` (these functions),
``cloudrun`` (the cloud side of a run), ``distributed`` (scale-out workers), ``gc``
(garbage collection of versions and content).

Importing this package fills the task hooks: ``Task.download()``/``Task.upload()`` and
reading a missing output after ``luisy.activate_download()``.
"""

from luisy.cloud.session import CloudSession, current_session, open_session
from luisy.cloud.state import CloudState
from luisy.cloud.outputs_report import OutputsReport
from luisy.cloud.verbs import (collect_garbage, download, fetch_output, read_state, record_local_hashes,
                               refresh_hashes, sync_task_output, upload)
from luisy.errors import CloudError, CloudHashError
from luisy.tasks import hooks

hooks.fetch = fetch_output
hooks.transfer = sync_task_output

__all__ = [
    "CloudError", "CloudHashError", "CloudSession", "CloudState", "OutputsReport",
    "open_session", "current_session", "read_state", "download", "upload", "refresh_hashes",
    "record_local_hashes", "collect_garbage",
]
