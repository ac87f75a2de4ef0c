"""A fan-out / fan-in luisy pipeline for the distributed tests and benchmark (20 tasks).

    Numbers -> Part(0..7) -> Refined(0..7) -> Half(0, 1) -> Total

Every ``run()`` appends one line ``<task id>`` to the file named by ``$DIST_COUNTER``
(one ``O_APPEND`` write, so lines from many processes never interleave) and sleeps
``$DIST_SLEEP`` seconds, so that parallelism shows in the wall time. Tasks whose
family is listed in ``$DIST_FAIL`` (comma-separated) raise after that.
"""

from __future__ import annotations

import os
import time

import luisy

PROJECT = "distdemo"
PARTS = 8
HALVES = 2
N_NUMBERS = 4000


class PlannedFailure(RuntimeError):
    """Raised by tasks whose family is named in ``$DIST_FAIL``."""


def count_run(task_id: str) -> None:
    """Record one run of ``task_id``, take the configured nap, fail when asked to."""
    path = os.environ.get("DIST_COUNTER")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{task_id}\n".encode())
        finally:
            os.close(fd)
    time.sleep(float(os.environ.get("DIST_SLEEP", "0")))
    if task_id.split("_", 1)[0] in os.environ.get("DIST_FAIL", "").split(","):
        raise PlannedFailure(f"{task_id} fails as asked by DIST_FAIL")


def part_value(numbers: list[int], part: int) -> int:
    return sum(n * (part + 1) for n in numbers[part::PARTS])


def refined_value(value: int, part: int) -> int:
    return (value * value + part) % 1_000_003


def expected_total() -> dict[str, object]:
    """The final output, computed in-process (what the pipeline must produce)."""
    numbers = list(range(N_NUMBERS))
    refined = [refined_value(part_value(numbers, p), p) for p in range(PARTS)]
    per = PARTS // HALVES
    halves = [sum(refined[h * per:(h + 1) * per]) for h in range(HALVES)]
    return {"halves": halves, "total": sum(halves)}


@luisy.project_name(PROJECT)
@luisy.raw
class Numbers(luisy.Task):
    """The raw numbers."""

    def run(self) -> None:
        count_run(self.task_id)
        self.write(list(range(N_NUMBERS)))


@luisy.project_name(PROJECT)
@luisy.interim
class Part(luisy.Task):
    """One slice of the numbers, weighted."""

    part = luisy.IntParameter()

    def requires(self) -> Numbers:
        return Numbers()

    def run(self) -> None:
        count_run(self.task_id)
        self.write(part_value(self.input().read(), self.part))


@luisy.project_name(PROJECT)
@luisy.interim
class Refined(luisy.Task):
    """A slice's value, refined."""

    part = luisy.IntParameter()

    def requires(self) -> Part:
        return Part(part=self.part)

    def run(self) -> None:
        count_run(self.task_id)
        self.write(refined_value(self.input().read(), self.part))


@luisy.project_name(PROJECT)
@luisy.interim
class Half(luisy.Task):
    """The sum of one half of the refined slices."""

    half = luisy.IntParameter()

    def requires(self) -> list[Refined]:
        per = PARTS // HALVES
        return [Refined(part=p) for p in range(self.half * per, (self.half + 1) * per)]

    def run(self) -> None:
        count_run(self.task_id)
        self.write(sum(t.read() for t in self.input()))


@luisy.project_name(PROJECT)
@luisy.final
class Total(luisy.Task):
    """Both halves and their sum."""

    def requires(self) -> list[Half]:
        return [Half(half=h) for h in range(HALVES)]

    def run(self) -> None:
        count_run(self.task_id)
        halves = [t.read() for t in self.input()]
        self.write({"halves": halves, "total": sum(halves)})
