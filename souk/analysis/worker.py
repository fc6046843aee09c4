"""Analysis worker processes: `analyze_columns` of the writer's batches in another interpreter (another core).

A worker is the writer's interpreter running `main` below with the same `souk` directory, of which it imports
the analysis layer only (not the flat API `import souk` loads: two thirds of the start-up); it reads
length-prefixed pickled batches on stdin and answers each, in order, on stdout. It never imports the script
that started it (multiprocessing's spawn re-runs an unguarded main script), shares nothing with it (no fork of
a process with tantivy's threads running) and exits when its stdin closes: when the writer closes it or dies
(kill -9 included). A `Worker` in the writer's process turns its answers into futures; a worker that fails to
start or dies fails its futures, and the writer analyzes those batches itself.
Misuse: sending a worker anything but batches from this process (its input is trusted pickle).
"""
from __future__ import annotations

import collections
import pickle
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

_HEADER = struct.Struct("<Q")
_READY = b"ready"
# the worker's command: `souk` as a bare package of this directory (its __init__, the flat API, is not run)
_BOOT = ("import sys, types\n"
         "package = types.ModuleType('souk')\n"
         "package.__path__ = [sys.argv[1]]\n"
         "sys.modules['souk'] = package\n"
         "from souk.analysis.worker import main\n"
         "main()\n")


class WorkerError(RuntimeError):
    """A worker could not answer a batch (it failed to start, died, or the batch raised there)."""


class Worker:
    """One worker process; `submit` returns a future of the batch's columns of terms."""

    def __init__(self) -> None:
        package = str(Path(__file__).resolve().parents[1])  # this `souk` package's directory
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, package], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)
        self.ready: Future = Future()  # done once the worker has imported the analyzers
        self._waiting: collections.deque[Future] = collections.deque()
        self._outbox: queue.Queue[bytes | None] = queue.Queue()
        self._lock = threading.Lock()
        self._dead = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="souk-analysis-reader")
        self._writer = threading.Thread(target=self._write, daemon=True, name="souk-analysis-writer")
        self._reader.start()
        self._writer.start()

    @property
    def alive(self) -> bool:
        return not self._dead

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def submit(self, specs: list[tuple[str, str]], user_dict: str | None, columns: list[list[str | None]]) -> Future:
        future: Future = Future()
        payload = pickle.dumps((specs, user_dict, columns), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._dead:
                future.set_exception(WorkerError("the analysis worker is gone"))
                return future
            self._waiting.append(future)
        self._outbox.put(payload)  # written by a thread: a busy worker never blocks this process
        return future

    def close(self) -> None:
        """Close its input (it exits), wait a little, then kill it."""
        self._outbox.put(None)
        self._writer.join(timeout=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        self._fail("the analysis worker was closed")

    def _write(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (payload := self._outbox.get()) is not None:
                _write_frame(stdin, payload)
        except OSError:  # the worker died: the reader fails the futures
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        if _read_frame(stdout) != _READY:
            self.ready.set_exception(WorkerError("the analysis worker failed to start"))
        else:
            self.ready.set_result(True)
            while (frame := _read_frame(stdout)) is not None:
                ok, value = pickle.loads(frame)
                with self._lock:
                    future = self._waiting.popleft()
                future.set_result(value) if ok else future.set_exception(WorkerError(value))
        self._fail("the analysis worker exited")

    def _fail(self, why: str) -> None:
        with self._lock:
            self._dead = True
            waiting, self._waiting = list(self._waiting), collections.deque()
        for future in waiting:
            future.set_exception(WorkerError(why))


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def main() -> None:
    """The worker's loop: answer batches from stdin until it closes."""
    from souk.analysis.batch import analyze_columns

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers
    analyze_columns([("standard", "text")], None, [["warm up"]])  # stopwords and the stemmer loaded
    _write_frame(stdout, _READY)
    while (frame := _read_frame(stdin)) is not None:
        specs, user_dict, columns = pickle.loads(frame)
        try:
            answer: tuple[bool, Any] = (True, analyze_columns(specs, user_dict, columns))
        except Exception as e:  # the writer analyzes this batch itself and reports what went wrong there
            answer = (False, f"{type(e).__name__}: {e}")
        _write_frame(stdout, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
