"""Read-ahead keeps order, raises the producer's errors at the right item, and stops early."""

import threading
import time

import pytest

from geocopgen.prefetch import prefetch


def test_order_and_values_are_kept() -> None:
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))


def test_producer_error_is_raised_at_its_item() -> None:
    def items():
        yield 1
        yield 2
        raise OSError("unreadable chip")

    seen = []
    with pytest.raises(OSError, match="unreadable chip"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_breaking_early_stops_the_producer() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in prefetch(items(), depth=1):
        if item == 3:
            break
    time.sleep(0.1)
    assert len(produced) <= 6  # the item being read when we stopped, and the buffered one
    assert not [t for t in threading.enumerate() if t.name == "geocopgen-prefetch"]


def test_next_item_is_read_while_the_consumer_works() -> None:
    reading_second = threading.Event()

    def items():
        yield 0
        reading_second.set()
        yield 1

    for item in prefetch(items()):
        if item == 0:  # the producer reaches item 1 without waiting for this loop to move on
            assert reading_second.wait(timeout=10)
