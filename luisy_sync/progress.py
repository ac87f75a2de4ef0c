"""Progress events of a transfer: a callback interface, a no-op default, a rich display.

The transfer engine reports through a ``FileTracker``, which remembers how many bytes
were counted per file so that a file restarted from scratch (``retried``) or given up
(``failed``) un-counts them: the byte totals never count anything twice.
"""

from __future__ import annotations

import sys
from typing import Any


class ProgressCallback:
    """Receives progress events; every method is a no-op here (override what you need).

    Methods are called from the event loop thread, in order per file:
    ``started`` → ``advanced``* → (``retried`` → ``advanced``*)* → ``finished`` | ``failed``.
    """

    def begin(self, direction: str, files: int, total_bytes: int) -> None:
        """The transfer of ``files`` files (``total_bytes`` bytes) begins."""

    def started(self, path: str, size: int) -> None:
        """A file starts moving."""

    def advanced(self, path: str, nbytes: int) -> None:
        """``nbytes`` more bytes of ``path`` moved (negative: un-count after a restart)."""

    def retried(self, path: str, attempt: int, reason: str) -> None:
        """A request for ``path`` failed and will be tried again (attempt is 1-based)."""

    def finished(self, path: str) -> None:
        """A file arrived and was verified."""

    def failed(self, path: str, reason: str) -> None:
        """A file failed for good."""

    def end(self) -> None:
        """The transfer is over (called even when it failed or was cancelled)."""


NO_PROGRESS = ProgressCallback()
"""The shared do-nothing callback."""


class RichProgress(ProgressCallback):
    """Two bars on the terminal: files done and bytes moved (with transfer speed)."""

    def __init__(self, console: Any = None):
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress,
                                   ProgressColumn, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        class _Amount(ProgressColumn):
            """``12/300`` for the files bar, ``1.2/4.0 GiB  35.1 MiB/s`` for the bytes bar."""

            count, size, speed = MofNCompleteColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn()

            def render(self, task: Any) -> Any:
                if not task.fields.get("bytes"):
                    return self.count.render(task)
                from rich.text import Text

                return Text.assemble(self.size.render(task), "  ", self.speed.render(task))

        self._progress = Progress(
            TextColumn("{task.description:<14}"), BarColumn(), _Amount(), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self._files: Any = None
        self._bytes: Any = None

    def begin(self, direction: str, files: int, total_bytes: int) -> None:
        verb = "upload" if direction == "push" else "download"
        self._progress.start()
        self._files = self._progress.add_task(f"{verb} files", total=files)
        self._bytes = self._progress.add_task(f"{verb} bytes", total=total_bytes, bytes=True)

    def advanced(self, path: str, nbytes: int) -> None:
        if self._bytes is not None:
            self._progress.advance(self._bytes, nbytes)

    def finished(self, path: str) -> None:
        if self._files is not None:
            self._progress.advance(self._files, 1)

    def failed(self, path: str, reason: str) -> None:
        if self._files is not None:
            self._progress.advance(self._files, 1)
            self._progress.console.print(f"[red]failed[/red] {path}: {reason}", markup=True,
                                         highlight=False)

    def end(self) -> None:
        self._progress.stop()


def make_progress(progress: bool | ProgressCallback | None) -> ProgressCallback:
    """The callback for an API ``progress=`` argument.

    A ProgressCallback is used as is; ``True`` shows the rich display when stdout is a
    terminal; ``None``/``False`` (or no terminal) report nothing.
    """
    if isinstance(progress, ProgressCallback):
        return progress
    if progress is True and sys.stdout.isatty():
        return RichProgress()
    return NO_PROGRESS


class FileTracker:
    """Per-file byte accounting between the transfer engine and a ProgressCallback."""

    def __init__(self, callback: ProgressCallback | None = None):
        self.callback = callback or NO_PROGRESS
        self._counted: dict[str, int] = {}
        self.bytes_done = 0
        """Bytes of files that finished (what the report calls bytes transferred)."""

    def started(self, path: str, size: int) -> None:
        self._counted[path] = 0
        self.callback.started(path, size)

    def counted(self, path: str) -> int:
        """Bytes of ``path`` counted since it started."""
        return self._counted.get(path, 0)

    def advanced(self, path: str, nbytes: int) -> None:
        self._counted[path] = self._counted.get(path, 0) + nbytes
        self.callback.advanced(path, nbytes)

    def retried(self, path: str, attempt: int, reason: str, *, restart: bool = False) -> None:
        """A retry of one request, or (``restart``) of the whole file: its bytes are un-counted."""
        if restart:
            counted = self._counted.get(path, 0)
            if counted:
                self._counted[path] = 0
                self.callback.advanced(path, -counted)
        self.callback.retried(path, attempt, reason)

    def finished(self, path: str) -> None:
        self.bytes_done += self._counted.pop(path, 0)
        self.callback.finished(path)

    def failed(self, path: str, reason: str) -> None:
        counted = self._counted.pop(path, 0)
        if counted:
            self.callback.advanced(path, -counted)
        self.callback.failed(path, reason)
