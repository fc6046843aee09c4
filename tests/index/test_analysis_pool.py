"""Analysis split between the writer's process and a worker gives the terms the writer would compute alone."""

from souk.index import Index
from souk.index.writer import AnalysisPool, analyze_rows
from souk.schema import beir_schema
from souk.catalogs import read_catalog
from support import FIXTURES

SPECS = [("standard", "title"), ("standard", "text"), ("cjk_bigram", "text")]
ROWS = [[f"Solar panel {i}", None if i % 7 == 0 else f"Rooftop 嘉頓蛋糕 panels convert sunlight {i}", f"面包 {i}"]
        for i in range(150)]


def test_pool_matches_in_process_analysis():
    pool = AnalysisPool(workers=1)
    try:
        assert pool.analyze(SPECS, None, ROWS) == analyze_rows(SPECS, None, ROWS)
        assert pool._pool is not None  # the worker really took a share
    finally:
        pool.close()
    assert AnalysisPool(workers=0).analyze(SPECS, None, ROWS[:3]) == analyze_rows(SPECS, None, ROWS[:3])


def test_a_failed_worker_leaves_the_batch_to_this_process(monkeypatch):
    pool = AnalysisPool(workers=1)

    class Broken:
        def submit(self, *a, **k):
            from concurrent.futures import Future

            f = Future()
            f.set_exception(RuntimeError("worker died"))
            return f

        def shutdown(self, **k):
            pass

    pool._pool = Broken()
    assert pool.analyze(SPECS, None, ROWS) == analyze_rows(SPECS, None, ROWS)
    assert pool.workers == 0 and pool._pool is None


def test_index_written_with_a_worker_equals_one_written_alone(tmp_path):
    records = list(read_catalog(FIXTURES / "beir-mini")) * 20  # same ids again: upserts, > one worker share
    results = []
    for workers in (0, 1):
        index = Index.create(tmp_path / f"ix{workers}", beir_schema())
        with index.writer() as writer:
            writer._analysis_pool.workers = workers
            writer.add(records)
            writer.commit()
        s = index.searcher()
        results.append([(s.num_docs, s.bm25(q, 5).pairs()) for q in ("solar panels", "electricity wind", "coffee")])
    assert results[0] == results[1] and results[0][0][0] == 8


def test_workers_exit_when_the_writing_process_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from support import REPO

    script = ("import sys, time\n"
              "from souk.index.writer import AnalysisPool\n"
              "if __name__ == '__main__':\n"
              "    pool = AnalysisPool(workers=1)\n"
              "    pool.analyze([('standard', 'title')], None, [['solar panel']] * 100)\n"
              "    print(*pool._pool._processes, flush=True)\n"
              "    time.sleep(60)\n")
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
