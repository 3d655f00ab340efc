"""Running an iterator ahead in a background thread.

Used where a producer releases the GIL and can overlap with the consumer: zstd
decompression ahead of block scheduling (ingest), tokenization ahead of the forward pass
(embed).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


def prefetch(items: Iterable[T], depth: int = 1, name: str = "wsb-gpu-prefetch") -> Iterator[T]:
    """Yield ``items``, produced by a background thread at most ``depth`` items ahead.

    An exception in the producer is raised in the consumer. When the consumer stops early
    (``break``, an exception, garbage collection), the producer is told to stop and joined.

    >>> list(prefetch(iter(range(3))))
    [0, 1, 2]
    >>> [1 / x for x in prefetch(x for x in [1, 0])]
    Traceback (most recent call last):
    ...
    ZeroDivisionError: division by zero
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
