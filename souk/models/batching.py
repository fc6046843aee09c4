"""Micro-batching: concurrent callers of one model share its forward passes.

A server answers many searches at once, and each dense search encodes one short query; a forward pass over
16 queries costs about what 4 single ones do on a CPU. `MicroBatcher(fn)` coalesces concurrent calls of
`fn(items) -> rows`: a caller finding the model idle runs its items at once (nothing added when alone);
callers arriving meanwhile queue, and when the run ends the first of them runs everything queued, up to
`max_items`, for all of them.
Misuse: wrapping a function whose rows depend on the other items of the batch.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np


class _Call:
    __slots__ = ("items", "event", "lead", "result", "error")

    def __init__(self, items: list[Any]):
        self.items = items
        self.event = threading.Event()
        self.lead = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Thread-safe `fn` over lists, rows in input order, run for several concurrent callers at once."""

    def __init__(self, fn: Callable[[list[Any]], np.ndarray], max_items: int = 64):
        self._fn = fn
        self._max = max_items
        self._lock = threading.Lock()
        self._queue: list[_Call] = []
        self._busy = False
        self.runs = 0  # forward passes made (for tests and metrics)

    def __call__(self, items: Sequence[Any]) -> np.ndarray:
        call = _Call(list(items))
        with self._lock:
            self._queue.append(call)
            if not self._busy:
                self._busy = call.lead = True
        while not call.lead:
            call.event.wait()
            call.event.clear()
        if call.result is None and call.error is None:
            self._run()
        if call.error is not None:
            raise call.error
        assert call.result is not None  # the lead's run set it
        return call.result

    def _run(self) -> None:
        """Run the queue's head (this caller first) as one batch, then hand the model to the next caller."""
        with self._lock:
            take, size = 0, 0
            while take < len(self._queue) and (take == 0 or size + len(self._queue[take].items) <= self._max):
                size += len(self._queue[take].items)
                take += 1
            batch, self._queue = self._queue[:take], self._queue[take:]
        try:
            rows = self._fn([x for c in batch for x in c.items])
            self.runs += 1
            start = 0
            for c in batch:
                c.result, start = rows[start:start + len(c.items)], start + len(c.items)
        except BaseException as e:  # every caller of the batch gets the error
            for c in batch:
                c.error = e
        with self._lock:
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].event.set()
            else:
                self._busy = False
        for c in batch[1:]:
            c.lead = True  # served: wake to return the result
            c.event.set()
