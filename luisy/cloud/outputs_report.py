"""What one download or upload of outputs did: :class:`OutputsReport`, per output key over
the engine's file-level :class:`~luisy_sync.report.Report`."""

from __future__ import annotations

from dataclasses import dataclass

from luisy_sync.conventions import format_bytes
from luisy_sync.plan import PULL, PUSH
from luisy_sync.report import Report

__all__ = ["KEPT_REASON", "OutputsReport", "nothing"]

KEPT_REASON = "kept as a version; the latest is another upload"
"""Why an uploaded output is not the latest: a concurrent upload of another version won."""



@dataclass(frozen=True)
class OutputsReport:
    """What one download or upload did per output key, over the engine's file-level
    :class:`~luisy_sync.report.Report`. ``held``: outputs not uploaded although they
    differ, with why (see :func:`plan_uploads`); ``kept``: outputs stored as a version
    (among ``keys_done``) while a concurrent upload of another version became the latest."""

    report: Report
    keys_done: tuple[str, ...] = ()
    keys_failed: tuple[tuple[str, str], ...] = ()
    planned: tuple[str, ...] = ()
    held: tuple[tuple[str, str], ...] = ()
    kept: tuple[tuple[str, str], ...] = ()

    @property
    def direction(self) -> str:
        """``upload`` or ``download``."""
        return "upload" if self.report.direction == PUSH else "download"

    @property
    def ok(self) -> bool:
        """True when no output failed."""
        return not self.keys_failed

    @property
    def files(self) -> int:
        """Files moved."""
        return len(self.report.moved)

    def summary_line(self) -> str:
        """One line: outputs, files, bytes, seconds, rate in binary units (and failures)."""
        direction, report = self.direction, self.report
        if not (self.planned or self.keys_done or self.keys_failed):
            where = "the cloud" if direction == "upload" else "the working dir"
            if self.held:
                return f"{direction}: nothing to {direction}; {len(self.held)} held back"
            return f"{direction}: nothing to {direction}, {where} is up to date"
        if report.dry_run:
            return (f"{direction}: dry run, would move {len(self.planned)} output(s), "
                    f"{format_bytes(report.bytes_planned)}")
        line = (f"{direction}: {len(self.keys_done)} output(s), {self.files} file(s), "
                f"{format_bytes(report.bytes_transferred)} in {report.seconds:.2f} s, "
                f"{format_bytes(report.bytes_per_second)}/s")
        if self.kept:
            line += f"; {len(self.kept)} {KEPT_REASON}"
        if self.keys_failed:
            key, reason = self.keys_failed[0]
            line += f"; {len(self.keys_failed)} failed, first {key}: {reason}"
        return line

    def to_dict(self) -> dict[str, object]:
        """The JSON form used in ``luisy --json`` reports."""
        report = self.report
        return {"direction": self.direction, "outputs": list(self.keys_done),
                "failed": [{"key": k, "reason": r} for k, r in self.keys_failed],
                "files": self.files, "bytes": report.bytes_transferred,
                "seconds": round(report.seconds, 4), "dry_run": report.dry_run,
                "planned": list(self.planned), "planned_bytes": report.bytes_planned,
                "held": [{"key": k, "reason": r} for k, r in self.held],
                "kept": [{"key": k, "reason": r} for k, r in self.kept]}


def nothing(direction: str) -> OutputsReport:
    """The report of a download or upload that had nothing to do."""
    return OutputsReport(Report(PUSH if direction == "upload" else PULL))
