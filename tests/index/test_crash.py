"""kill -9 during indexing leaves the last committed state fully readable, and indexing can resume."""
import json
import os
import signal
import subprocess
import time

from souk.index import Index
from support import SOUK

N, EVERY = 60_000, 5_000


def write_catalog(path):
    words = "red blue green shoe cake milk tea noodle phone case cable 蛋糕 牛奶 手机壳".split()
    with path.open("w", encoding="utf-8") as fh:
        for i in range(N):
            title = " ".join(words[(i * 7 + j) % len(words)] for j in range(6))
            fh.write(json.dumps({"id": f"d{i}", "title": f"{title} item{i}", "brand": f"b{i % 9}", "price": i % 500}, ensure_ascii=False) + "\n")


def committed_docs(index_dir):
    try:
        return Index.open(index_dir).searcher().num_docs
    except Exception:
        return 0


def test_kill_9_mid_indexing_keeps_last_commit(tmp_path):
    catalog, index_dir = tmp_path / "big.jsonl", tmp_path / "index"
    write_catalog(catalog)
    cmd = [*SOUK, "index", str(catalog), "--index", str(index_dir), "--commit-every", str(EVERY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while committed_docs(index_dir) < EVERY and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "indexing finished before it could be killed; raise N"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

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
