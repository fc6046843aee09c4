"""Concurrent callers share forward passes and each gets its own rows back."""
import threading
import time

import numpy as np
import pytest

from souk.models.batching import MicroBatcher


def slow_double(items):
    time.sleep(0.02)  # a forward pass: callers arriving meanwhile queue for the next one
    return np.asarray(items, dtype=np.float64)[:, None] * 2


def test_concurrent_calls_are_batched_and_rows_go_back_to_their_callers():
    batcher = MicroBatcher(slow_double, max_items=8)
    results, errors = {}, []

    def call(i):
        try:
            results[i] = batcher([i, i + 0.5])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.allclose(results[i][:, 0], [2 * i, 2 * i + 1]) for i in range(20))
    assert batcher.runs < 20 and batcher.runs >= 5  # at most 4 callers (8 items) a pass


def test_alone_a_call_runs_at_once_and_errors_reach_every_caller_of_the_batch():
    batcher = MicroBatcher(slow_double)
    assert batcher([1.0]).tolist() == [[2.0]] and batcher.runs == 1

    def broken(items):
        raise ValueError("model failed")

    with pytest.raises(ValueError, match="model failed"):
        MicroBatcher(broken)(["x"])
