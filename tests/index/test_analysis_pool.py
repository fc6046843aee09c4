"""Analysis in worker processes gives the terms the writer would compute alone, and never outlives the writer."""
import os
import signal
import subprocess
import sys
import time

import pytest

from souk.analysis.batch import analyze_columns
from souk.catalogs import read_catalog
from souk.index import Index
from souk.index.writer import AnalysisPool
from souk.schema import beir_schema
from support import FIXTURES, REPO

SPECS = [("standard", "title"), ("standard", "text"), ("cjk_bigram", "text")]
COLUMNS = [[f"Solar panel {i}" for i in range(150)],
           [None if i % 7 == 0 else f"Rooftop 嘉頓蛋糕 panels convert sunlight {i}" for i in range(150)],
           [f"面包 {i}" for i in range(150)]]


def _bulk(pool, batches=12):
    """Submit bulk batches until a worker has taken one (it starts on the second); their terms."""
    out, deadline = [], time.monotonic() + 60
    while len(out) < batches or not any(t._future is not None for t in out):
        out.append(pool.submit(SPECS, None, COLUMNS, bulk=True))
        if time.monotonic() > deadline:
            raise AssertionError("no worker took a batch within 60 s")
        time.sleep(0.05)
    return out


def test_workers_answer_what_this_process_computes():
    pool = AnalysisPool(workers=1)
    try:
        terms = _bulk(pool)
        expected = analyze_columns(SPECS, None, COLUMNS)
        assert all(t.result() == expected for t in terms)
        assert pool.pids()  # the worker really took batches
    finally:
        pool.close()
    small = AnalysisPool(workers=1)
    assert small.submit(SPECS, None, [c[:3] for c in COLUMNS], bulk=True).result() == \
        analyze_columns(SPECS, None, [c[:3] for c in COLUMNS])
    assert not small.pids()  # a small write starts no worker


def test_a_dead_worker_leaves_its_batches_to_this_process():
    pool = AnalysisPool(workers=1)
    try:
        terms = _bulk(pool)
        os.kill(pool.pids()[0], signal.SIGKILL)
        more = [pool.submit(SPECS, None, COLUMNS, bulk=True) for _ in range(6)]
        expected = analyze_columns(SPECS, None, COLUMNS)
        assert all(t.result() == expected for t in terms + more)
    finally:
        pool.close()


def test_index_written_with_a_worker_equals_one_written_alone(tmp_path):
    records = list(read_catalog(FIXTURES / "beir-mini")) * 200  # same ids again: upserts, many batches
    results = []
    for workers in (0, 1):
        index = Index.create(tmp_path / f"ix{workers}", beir_schema())
        with index.writer() as writer:
            writer._analysis_pool.workers = workers
            writer._batch_size = 64
            writer.add(records)
            assert workers == 0 or writer._analysis_pool.pids()
            writer.commit()
        s = index.searcher()
        results.append([(s.num_docs, s.bm25(q, 5).pairs()) for q in ("solar panels", "electricity wind", "coffee")])
    assert results[0] == results[1] and results[0][0][0] == 8


def test_workers_exit_when_the_writing_process_is_killed(tmp_path):
    script = ("import sys, time\n"
              "from souk.index.writer import AnalysisPool\n"
              "pool = AnalysisPool(workers=1)\n"
              "while not any(t._future is not None for t in\n"
              "              [pool.submit([('standard', 'title')], None, [['solar panel'] * 100], bulk=True)]):\n"
              "    time.sleep(0.05)\n"
              "print(*pool.pids(), flush=True)\n"
              "time.sleep(60)\n")
    (tmp_path / "writer.py").write_text(script)
    proc = subprocess.Popen([sys.executable, str(tmp_path / "writer.py")], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_by_default_are_the_cores_the_load_leaves_idle(monkeypatch):
    from souk.index import writer

    monkeypatch.delenv("SOUK_ANALYSIS_WORKERS", raising=False)
    for load, cores, expected in ((20.0, 2, 0), (0.2, 2, 1), (0.6, 2, 1), (1.0, 2, 0), (1.0, 8, 6), (0.0, 1, 0)):
        monkeypatch.setattr(writer.os, "getloadavg", lambda load=load: (load, load, load))
        assert writer.spare_cores(cores) == expected
    monkeypatch.setattr(writer.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert AnalysisPool().workers == min(writer.spare_cores(len(os.sched_getaffinity(0))), AnalysisPool.MAX_WORKERS)
    monkeypatch.setenv("SOUK_ANALYSIS_WORKERS", "0")
    assert AnalysisPool().workers == 0


def test_no_process_to_be_had_means_analysis_here(monkeypatch):
    from souk.analysis import worker

    def refuse(*a, **k):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(worker.subprocess, "Popen", refuse)
    pool = AnalysisPool(workers=1)
    terms = [pool.submit(SPECS, None, COLUMNS, bulk=True) for _ in range(3)]
    assert all(t.result() == analyze_columns(SPECS, None, COLUMNS) for t in terms) and pool.workers == 0


def test_default_workers_are_the_cores_that_stood_idle_while_the_first_batches_filled(monkeypatch):
    """The CPU times (the seam: /proc/stat) say how many cores idled beside this process; the load average, which
    counts this very process once it has run a while, is only the fallback where they cannot be read."""
    from souk.index import writer

    monkeypatch.delenv("SOUK_ANALYSIS_WORKERS", raising=False)
    monkeypatch.setattr(writer.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(writer.os, "getloadavg", lambda: (1.2, 1.2, 1.2))  # the load average alone: no worker
    started = []
    monkeypatch.setattr(AnalysisPool, "_idle_worker", lambda self: started.append(self.workers))  # (none started)
    # a start, a sample too soon to tell (8 ticks on 2 cores), then half of the 2 cores idle since the start;
    # 0.4 of a core idle takes a worker, 0.2 does not
    cases = [([(0, 0), (3, 8), (100, 200)], 1), ([(0, 0), (40, 200)], 1), ([(0, 0), (20, 200)], 0),
             ([None, None], 0), ([(0, 0), None], 0)]
    for samples, expected in cases:
        feed = iter(samples)
        monkeypatch.setattr(writer, "cpu_times", lambda cpus: next(feed))
        pool, started[:] = AnalysisPool(), []
        assert pool.workers == 0  # (the load average's guess until measured)
        terms = [pool.submit(SPECS, None, COLUMNS, bulk=True) for _ in range(4)]
        assert pool.workers == expected, samples
        assert len(started) == (2 if samples[1] == (3, 8) else 3 if expected else 0), samples
        assert all(t.result() == analyze_columns(SPECS, None, COLUMNS) for t in terms)


def test_cpu_times_read_this_machines_cores():
    from souk.index.writer import cpu_times, idle_cores

    cpus = os.sched_getaffinity(0)
    before = cpu_times(cpus)
    if before is None:  # (no /proc/stat: not Linux)
        return
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        pass
    after = cpu_times(cpus)
    assert after is not None and after[1] > before[1] and after[0] >= before[0]
    idle = idle_cores(before, after, len(cpus))
    assert idle is None or 0 <= idle <= len(cpus) - 0.5  # this loop kept one core busy
    assert cpu_times({10**6}) is None


def test_other_load_counts_another_process_and_not_this_one():
    """`OtherLoad` (the cross fit's record of who else ran during its timing probe): a child process spinning for
    0.6 s reads as about one core; this process spinning alone reads as about none."""
    from souk.index.writer import OtherLoad, cpu_times

    if cpu_times(os.sched_getaffinity(0)) is None or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs /proc/stat and two cores")
    alone = OtherLoad()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        pass
    mine = alone.cores()
    busy = OtherLoad()
    spin = "import time\nend = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass"
    subprocess.run([sys.executable, "-c", spin], check=True)
    theirs = busy.cores()
    assert mine is not None and theirs is not None
    assert theirs > 0.5 and theirs > mine + 0.4, (mine, theirs)
