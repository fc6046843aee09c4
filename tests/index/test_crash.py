"""kill -9 during indexing leaves the last committed state fully readable, and indexing can resume."""
import json
import os
import signal
import subprocess
import time

import pytest

from souk.index import Index
from support import SOUK

N, EVERY = 20_000, 2_000  # ten commits: killed after the first with seconds to spare, resumed in a few


def write_catalog(path, n=N):
    words = "red blue green shoe cake milk tea noodle phone case cable 蛋糕 牛奶 手机壳".split()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            title = " ".join(words[(i * 7 + j) % len(words)] for j in range(6))
            fh.write(json.dumps({"id": f"d{i}", "title": f"{title} item{i}", "brand": f"b{i % 9}", "price": i % 500},
                                ensure_ascii=False) + "\n")


def committed_docs(index_dir):
    try:
        return Index.open(index_dir).searcher().num_docs
    except Exception:
        return 0


def index_and_kill(catalog, index_dir, every, *extra):
    """Start `souk index`, wait for its first commit, kill -9 it mid-way; returns the command."""
    cmd = [*SOUK, "index", str(catalog), "--index", str(index_dir), "--commit-every", str(every), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while committed_docs(index_dir) < every and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be killed; raise the catalog size"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return cmd


@pytest.mark.slow
def test_kill_9_mid_indexing_keeps_last_commit(tmp_path):
    catalog, index_dir = tmp_path / "big.jsonl", tmp_path / "index"
    write_catalog(catalog)
    cmd = index_and_kill(catalog, index_dir, EVERY)

    index = Index.open(index_dir)
    searcher = index.searcher()
    docs = searcher.num_docs
    assert 0 < docs < N and docs % EVERY == 0, docs
    hits = searcher.bm25("cake", 10_000)
    assert len(hits) > 0
    assert all(d is not None for d in searcher.docs(hits.ids[:50]))

    # the killed writer's lock is gone: indexing the same file again completes (same ids update)
    subprocess.run(cmd, check=True, capture_output=True)
    assert Index.open(index_dir).searcher().num_docs == N


@pytest.mark.slow
def test_kill_9_mid_vector_indexing_keeps_vectors_and_docs_in_step(tmp_path):
    from souk.ranking.pipeline import build_pipeline
    from souk.retrieval.dense import vector_set

    catalog, index_dir, n, every = tmp_path / "v.jsonl", tmp_path / "index", 4_000, 256
    write_catalog(catalog, n)
    cmd = index_and_kill(catalog, index_dir, every, "--vectors")
    searcher = Index.open(index_dir).searcher()
    docs = searcher.num_docs
    assert 0 < docs < n and docs % every == 0, docs
    assert len(vector_set(searcher)) == docs  # every committed document has its vector, and no other
    assert len(build_pipeline("dense", searcher).search("blue cake", 10)) == 10

    subprocess.run(cmd, check=True, capture_output=True)
    searcher = Index.open(index_dir).searcher()
    assert searcher.num_docs == n and len(vector_set(searcher)) == n
