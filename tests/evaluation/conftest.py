"""Fixtures for the evaluation tests: the tiny redistributable set, real BM25 runs over ../shared."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from souk.evaluation.datasets import Dataset, iter_beir_corpus, load_beir
from souk.evaluation.runs import Run
from souk.types import Ranking
from support import DATA

FIXTURES = Path(__file__).parent / "fixtures"


class BM25Pipeline:
    """A real BM25 retriever (bm25s, Snowball stemming, English stopwords) over a BEIR corpus."""

    def __init__(self, directory: Path):
        import bm25s
        import Stemmer

        docs = list(iter_beir_corpus(directory))
        self.ids = [doc["_id"] for doc in docs]
        self.stemmer = Stemmer.Stemmer("english")
        self.model = bm25s.BM25(k1=0.9, b=0.4)
        texts = [f"{doc.get('title', '')} {doc.get('text', '')}" for doc in docs]
        self.model.index(self._tokens(texts), show_progress=False)

    def _tokens(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def search(self, query: str, k: int) -> Ranking:
        k = min(k, len(self.ids))
        docs, scores = self.model.retrieve(self._tokens([query]), k=k, show_progress=False)
        keep = scores[0] > 0
        return Ranking([self.ids[i] for i in docs[0][keep]], scores[0][keep].astype(np.float32))

    def run(self, dataset: Dataset, k: int) -> Run:
        """All queries at once (batched), for tests that need a run rather than latencies."""
        qids = list(dataset.queries)
        docs, scores = self.model.retrieve(
            self._tokens([dataset.queries[q] for q in qids]), k=k, show_progress=False
        )
        return {
            qid: [(self.ids[d], float(s)) for d, s in zip(docs[row], scores[row]) if s > 0]
            for row, qid in enumerate(qids)
        }


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The directory of small redistributable fixtures (tiny BEIR set, TREC qrels, runs)."""
    return FIXTURES


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return load_beir(FIXTURES / "tiny", "test")


@pytest.fixture(scope="session")
def bm25() -> Callable[[Path], BM25Pipeline]:
    """Build (once per directory) a BM25Pipeline."""
    cache: dict[Path, BM25Pipeline] = {}

    def build(directory: Path) -> BM25Pipeline:
        if directory not in cache:
            cache[directory] = BM25Pipeline(directory)
        return cache[directory]

    return build


@pytest.fixture(scope="session")
def real_runs(bm25) -> dict[str, tuple[Dataset, Run]]:
    """BM25 top-100 runs on cranfield/test and scifact/dev (mark the test `needs_shared("data")`)."""
    out = {}
    for name, split in (("cranfield", "test"), ("scifact", "dev")):
        dataset = load_beir(DATA / name, split)
        out[name] = (dataset, bm25(DATA / name).run(dataset, k=100))
    return out
