"""Report: what one push or pull did, as a plain frozen value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from luisy_sync.conventions import format_bytes


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


@dataclass(frozen=True)
class Report:
    """The outcome of a push or pull.

    ``uploaded``/``downloaded``/``skipped`` are the relative paths in each state,
    ``failed`` holds ``(path, one-line reason)`` pairs. ``files_planned`` and
    ``bytes_planned`` count what the plan asked to move. ``left_out``: local names a
    push did not upload because luisy_sync reserves them (its temp files, a root
    ``.luisy-store/``, the push manifest). ``conflicts``: ``(path, what changed)`` for
    local files a pull kept instead of overwriting (see ``pull(force=...)``).
    """

    direction: str
    uploaded: tuple[str, ...] = ()
    downloaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    bytes_transferred: int = 0
    seconds: float = 0.0
    files_planned: int = 0
    bytes_planned: int = 0
    dry_run: bool = False
    left_out: tuple[str, ...] = ()
    conflicts: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        # counts, not every path: a report of 100k files would print 100k names (and
        # asyncio formats the repr of a finished task's result when it restores signal handlers)
        return f"<Report {self.direction}: {self.summary_line()}>"

    @property
    def moved(self) -> tuple[str, ...]:
        """The paths transferred in this report's direction."""
        return self.uploaded if self.direction == "push" else self.downloaded

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    @property
    def bytes_per_second(self) -> float:
        """Average throughput over the whole operation (0 when nothing moved)."""
        return self.bytes_transferred / self.seconds if self.seconds > 0 else 0.0

    def summary_line(self) -> str:
        """One human line, e.g. ``uploaded 3 files (1.5 MiB) in 0.2 s, 7.5 MiB/s; 0 skipped; 0 failed``."""
        verb = "uploaded" if self.direction == "push" else "downloaded"
        if self.dry_run:
            line = (f"dry run: would have {verb} {_files(self.files_planned)} "
                    f"({format_bytes(self.bytes_planned)}); {len(self.skipped)} skipped")
        else:
            line = (f"{verb} {_files(len(self.moved))} ({format_bytes(self.bytes_transferred)}) "
                    f"in {self.seconds:.1f} s, {format_bytes(self.bytes_per_second)}/s; "
                    f"{len(self.skipped)} skipped; {len(self.failed)} failed")
        if self.conflicts:
            path, what = self.conflicts[0]
            kept = "would keep" if self.dry_run else "kept"
            line += (f"; {len(self.conflicts)} conflict(s) {kept} locally, first {path} ({what}); "
                     f"--force overwrites them")
        if self.left_out:
            line += (f"; {len(self.left_out)} left out (reserved names), "
                     f"first {self.left_out[0]}")
        return line

    def to_dict(self, *, paths: bool = False) -> dict[str, Any]:
        """A JSON-ready dict of counts (and every path when ``paths``); failures always listed."""
        out: dict[str, Any] = {
            "direction": self.direction,
            "dry_run": self.dry_run,
            "uploaded": len(self.uploaded),
            "downloaded": len(self.downloaded),
            "skipped": len(self.skipped),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "bytes_transferred": self.bytes_transferred,
            "seconds": round(self.seconds, 6),
            "files_planned": self.files_planned,
            "bytes_planned": self.bytes_planned,
            "left_out": list(self.left_out),
            "conflicts": [{"path": p, "what": w} for p, w in self.conflicts],
        }
        if paths:
            out["paths"] = {"uploaded": list(self.uploaded), "downloaded": list(self.downloaded),
                            "skipped": list(self.skipped)}
        return out
