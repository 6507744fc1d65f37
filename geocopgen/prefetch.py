"""Keep the device busy: read ahead in a background thread, and copy to a GPU without waiting.

GDAL reads and numpy resampling release the GIL, so while torch encodes one batch of chips the
next batch is already being read: the wall time of a translation approaches the longer of the
two instead of their sum. Host-to-GPU copies go through pinned memory and are non-blocking, so
the CPU prepares the next batch while the copy and the previous kernels run.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Iterate ``items`` with up to ``depth`` items produced ahead in a background thread.

    Order is kept, and an exception raised while producing an item is raised here, at that item.
    Stopping early (``break``, an error in the consumer, Ctrl-C) stops the producer after the
    item it is working on.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put((item, None))
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put((None, exc))
            return
        buffer.put((_DONE, None))

    worker = threading.Thread(target=produce, name="geocopgen-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full buffer
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.05)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` (on the host) on ``device``: unchanged for a CPU, a pinned, non-blocking copy for
    CUDA (ordered on the current stream, so kernels that use it wait for it, the host does not)."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)
