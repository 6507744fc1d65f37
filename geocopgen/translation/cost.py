"""The cost of a translation before it is spent: the denoising loop is timed, and once a batch
has run the whole loop's time is said on stderr (the progress bars show the time left after).

The estimate takes the second batch's time where there is one: the first carries one-off costs
(kernel selection and allocator warm-up on a GPU, page faults on a CPU) that the rest do not.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from geocopgen.precision import PrecisionPolicy

#: Runs expected to take less than this (seconds) are not announced.
ANNOUNCE_ABOVE_S = 60.0
#: Translations of more chip evaluations than this are announced before their first read (a
#: huge raster spends minutes encoding before the denoising loop can be timed).
ANNOUNCE_ABOVE_EVALUATIONS = 5000


def announce_plan(
    *, chips: int, calls: int, batch_size: int, precision: PrecisionPolicy, progress: bool
) -> None:
    """Say the size of a large translation before any of it is spent (stderr, with progress)."""
    if progress and chips * calls > ANNOUNCE_ABOVE_EVALUATIONS:
        tqdm.write(
            f"geocopgen: translating {chips} chips x {calls} model calls in batches of "
            f"{batch_size} on {precision.device.type} in {precision.name}; the time it takes "
            "is said once a batch has been denoised (Ctrl-C stops it, leaving nothing behind)",
            file=sys.stderr,
        )


def duration(seconds: float) -> str:
    """``3 h 05 min``, ``12 min``, ``40 s``: a duration as a person reads it."""
    if seconds >= 3600:
        hours, rest = divmod(round(seconds / 60), 60)
        return f"{hours} h {rest:02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds:.0f} s"


class DenoiseClock:
    """Times the backbone batches of one denoising loop and announces its cost once."""

    def __init__(
        self,
        *,
        chips: int,
        calls: int,
        batches: int,
        batch_size: int,
        precision: PrecisionPolicy,
        progress: bool,
    ) -> None:
        self.chips, self.calls, self.batches = chips, calls, batches
        self.batch_size, self.precision, self.progress = batch_size, precision, progress
        self.timed: list[float] = []
        self.estimate_s: float | None = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Time the batch run inside; announce the estimate after the right one."""
        if len(self.timed) >= 2:
            yield
            return
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.timed.append(time.perf_counter() - start)
        if len(self.timed) == min(2, self.batches * self.calls):
            self.estimate_s = self.timed[-1] * self.batches * self.calls
            if self.progress and self.estimate_s >= ANNOUNCE_ABOVE_S:
                tqdm.write(f"geocopgen: {self.message()}", file=sys.stderr)

    def message(self) -> str:
        """What the loop does and about how long it takes."""
        p = self.precision
        return (
            f"denoising {self.chips} chips x {self.calls} calls in batches of {self.batch_size} "
            f"on {p.device.type} in {p.name}: about {duration(self.estimate_s or 0.0)} "
            f"({self.timed[-1]:.2f} s per batch)"
        )

    def _sync(self) -> None:
        if self.precision.device.type == "cuda":
            torch.cuda.synchronize(self.precision.device)


__all__ = [
    "ANNOUNCE_ABOVE_EVALUATIONS",
    "ANNOUNCE_ABOVE_S",
    "DenoiseClock",
    "announce_plan",
    "duration",
]
