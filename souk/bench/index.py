"""`souk bench index`: souk indexing a BEIR corpus against bm25s indexing the same corpus with the same tokens.

Both sides start from the raw records: souk validates, analyzes (in parallel, see `AnalysisPool`), stores and
commits into a fresh index; the peer analyzes every document with souk's analyzer (the tokens souk's `all` field
indexes) and builds its bm25s index. Runs alternate sides, medians are reported; `ratio` is souk's docs/s over
the peer's.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from souk.catalogs import read_catalog
from souk.index import Index
from souk.schema import beir_schema


def bench_index(dataset: Path, repeat: int = 2) -> dict[str, Any]:
    """Docs/s of `souk index` (in-process, same code path) and of bm25s on `dataset`, `repeat` runs each."""
    from souk.analysis.filters import _KEPT, _STEMS
    from souk.bench.keyword import _Peer

    records = list(read_catalog(dataset))
    schema = beir_schema()
    peer = _Peer(schema.fields["all"].analyzer)
    times: dict[str, list[float]] = {"souk": [], "peer": []}
    workers = 0
    for r in range(repeat):
        for side in ("souk", "peer") if r % 2 == 0 else ("peer", "souk"):
            _STEMS.clear()  # every run starts with no remembered stems (the first would otherwise warm the other's)
            _KEPT.clear()
            t0 = time.perf_counter()
            if side == "peer":
                peer.index(records)
            else:
                workdir = Path(tempfile.mkdtemp(prefix="souk-bench-"))
                try:
                    index = Index.create(workdir / "index", schema)
                    with index.writer() as writer:
                        workers = writer._analysis_pool.workers
                        writer.add(records, on_error="skip")
                        writer.commit()
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
            times[side].append(time.perf_counter() - t0)
    souk_s, peer_s = statistics.median(times["souk"]), statistics.median(times["peer"])
    n = len(records)
    return {
        "dataset": str(dataset), "docs": n, "repeat": repeat,
        "docs_per_s": round(n / souk_s, 1), "peer_docs_per_s": round(n / peer_s, 1), "ratio": round(peer_s / souk_s, 3),
        "souk_runs_s": [round(t, 3) for t in times["souk"]], "peer_runs_s": [round(t, 3) for t in times["peer"]],
        "analysis_workers": workers, "peer": "bm25s (lucene) over souk's analyzer tokens of title + text",
    }
