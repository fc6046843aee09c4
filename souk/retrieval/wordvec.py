"""Word-vector recall: documents whose sentence vectors (the index's fitted `wordvec` model) are nearest
the query's, honouring filters; and `similarity(plan, ids)` for later stages to use as a feature.

The corpus side of a model is a `CorpusView` of one commit: each document's feature ids (flat int32 with
offsets) and its sentence vectors in a FAISS inner-product index (`souk.index.vectors.VectorSet`). The view
of the commit a model was fitted on is stored with the model (`MODEL/corpus/`); a later commit gets its
own view in `INDEX/cache/wordvec/<model>/<commit>/`, built once (documents whose stored source did not
change reuse their features from the newest older view) and renamed into place.
Misuse: building a view per query; `corpus_view` opens one per (searcher, model) and keeps it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import Unavailable
from souk.index.keys import doc_keys
from souk.index.store import SOURCE
from souk.index.vectors import VectorSet
from souk.errors import IndexStateError
from souk.models import store
from souk.models.store import read_model_manifest
from souk.models.word_vectors import WordVectors
from souk.progress import progress_bar
from souk.query.plan import QueryPlan
from souk.index.filters import Filters
from souk.plugins import NoOptions, parse_options
from souk.retrieval.base import RETRIEVERS, nearest
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

STAGE = "wordvec"
SMALL_BATCH = 8      # query batches up to this size are searched in numpy (see WordVecRetriever.search)
VIEW_FORMAT = 1
KEEP_VIEWS = 2
_VECTOR_PARAMS = {"index": "flat", "transform": "none", "normalize": True, "ef_search": 64, "nprobe": 16}
_VIEWS: "weakref.WeakKeyDictionary[object, dict[str, CorpusView]]" = weakref.WeakKeyDictionary()


def corpus_texts(searcher) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Keys, searchable text (the sources of the search fields, joined) and a source digest of every
    live document."""
    sources: list[str] = []
    for name in searcher.schema.search_fields:
        f = searcher.schema.fields[name]
        sources += [s for s in f.copy_from or [f.name] if s not in sources]
    keys, blobs = searcher.stored_bytes(SOURCE)
    texts, digests = [], np.zeros(len(blobs), np.uint64)
    for i, blob in enumerate(blobs):
        record = json.loads(blob) if blob else {}
        texts.append(" ".join(str(record[s]) for s in sources if isinstance(record.get(s), (str, int, float))
                              and record[s] != ""))
        digests[i] = int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")
    return np.asarray(keys, np.int64), texts, digests


def search_analyzer(schema) -> str:
    """The analyzer of the index's first search field (what a word-vector model is trained with)."""
    if not schema.search_fields:
        raise Unavailable("this index has no search field to learn word vectors from")
    return schema.fields[schema.search_fields[0]].analyzer


@dataclass
class CorpusView:
    """One commit's documents as feature ids (flat, with offsets) and unit sentence vectors, by sorted key."""

    keys: np.ndarray        # (n,) int64, sorted
    offsets: np.ndarray     # (n + 1,) int64 into `ids`
    ids: np.ndarray         # flat int32 feature ids (unknown features dropped)
    digests: np.ndarray     # (n,) uint64 source digests, to reuse rows after a commit
    vectors: np.ndarray     # (n, dim) float32 unit vectors
    commit_id: str = ""
    vocabulary: str = ""    # fingerprint of the model vocabulary the ids belong to
    _index: VectorSet | None = None

    def rows(self, positions: np.ndarray) -> list[np.ndarray]:
        return [self.ids[self.offsets[p]:self.offsets[p + 1]] for p in positions]

    def positions(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 for keys this view does not hold."""
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (len(self.keys) > 0) & (self.keys[pos] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return np.where(found, pos, -1)

    @property
    def index(self) -> VectorSet:
        """The FAISS inner-product index of the vectors (built on first use when not loaded)."""
        if self._index is None:
            self._index = VectorSet.build(self.keys, self.vectors, {**_VECTOR_PARAMS, "dim": self.vectors.shape[1]})
        return self._index

    @classmethod
    def build(cls, model: WordVectors, keys: np.ndarray, texts: Sequence[str], digests: np.ndarray, commit_id: str = "",
              older: "CorpusView | None" = None, progress: bool = False) -> "CorpusView":
        """Featurize and encode documents (rows of `older` whose digest matches are reused)."""
        order = np.argsort(keys, kind="stable")
        keys, digests = np.asarray(keys, np.int64)[order], np.asarray(digests, np.uint64)[order]
        reuse = older.positions(keys) if older is not None else np.full(len(keys), -1)
        if older is not None:
            reuse[reuse >= 0] = np.where(older.digests[reuse[reuse >= 0]] == digests[reuse >= 0], reuse[reuse >= 0], -1)
        rows: list[np.ndarray] = []
        with progress_bar("word-vector features", len(keys), enabled=progress) as advance:
            for i, o in zip(order, reuse):
                rows.append(older.rows(np.asarray([o]))[0] if older is not None and o >= 0
                            else (r := model.text_ids(texts[i]))[r >= 0])
                advance()
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate(rows).astype(np.int32) if len(rows) else np.zeros(0, np.int32)
        view = cls(keys, offsets, flat, digests, np.zeros((len(keys), model.dim), np.float32), commit_id)
        return view.reencode(model)

    def reencode(self, model: WordVectors) -> "CorpusView":
        """The same documents with vectors from `model` (same vocabulary), e.g. after fine-tuning."""
        vectors = model.encode_ids(self.rows(np.arange(len(self.keys)))) if len(self.keys) else self.vectors
        return CorpusView(self.keys, self.offsets, self.ids, self.digests, vectors, self.commit_id, model.fingerprint)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "view.npz", keys=self.keys, offsets=self.offsets, ids=self.ids, digests=self.digests)
        self.index.save(folder / "vectors")
        (folder / "view.json").write_text(json.dumps({"format": VIEW_FORMAT, "commit_id": self.commit_id,
                                                      "docs": len(self.keys),
                                                      "vocabulary": self.vocabulary}))

    @classmethod
    def load(cls, folder: Path, model: WordVectors) -> "CorpusView":
        """A saved view; its vectors are recomputed from the feature ids with `model` (cheap, and always
        the model's own), the FAISS index is read back. Raises ValueError or OSError when unusable."""
        info = json.loads((folder / "view.json").read_text())
        if info.get("format") != VIEW_FORMAT or info.get("vocabulary") != model.fingerprint:
            raise ValueError(f"{folder}: a view of another format or model")
        a = np.load(folder / "view.npz")
        try:
            index = VectorSet.load(folder / "vectors")
        except IndexStateError as e:
            raise ValueError(str(e)) from e
        view = cls(a["keys"], a["offsets"], a["ids"], a["digests"], np.zeros((len(a["keys"]), model.dim), np.float32),
                   info["commit_id"]).reencode(model)
        view._index = index
        return view


def read_model(path: Path) -> tuple[WordVectors, dict[str, Any]]:
    """The word vectors and manifest of a `wordvec` model directory (what the model store caches)."""
    return WordVectors.load(path), read_model_manifest(path)


def active_model(searcher) -> tuple[Path, WordVectors, dict[str, Any]]:
    """The index's active `wordvec` model directory, model and manifest; Unavailable when none was fitted."""
    path = store.resolve(searcher.path, STAGE)
    if path is None:
        raise Unavailable("no fitted wordvec model: run `souk fit --index DIR --train BEIR_DIR` (Chinese text) first")
    model, manifest = store.cached(path, read_model)
    return path, model, manifest


def corpus_view(searcher, model_dir: Path, model: WordVectors, progress: bool = False) -> CorpusView:
    """The model's view of the searcher's commit: stored with the model, cached, or built and cached."""
    per_searcher = _VIEWS.setdefault(searcher, {})
    key = str(model_dir)
    if key in per_searcher:
        return per_searcher[key]
    own = Path(model_dir) / "corpus"
    root = Path(searcher.path) / "cache" / STAGE / Path(model_dir).name
    view = None
    for folder in (own, root / searcher.commit_id):
        try:
            candidate = CorpusView.load(folder, model)
        except (OSError, ValueError, KeyError):
            continue  # absent or damaged: rebuilt, never trusted
        if candidate.commit_id == searcher.commit_id:
            view = candidate
            break
    if view is None:
        view = _build_cached(searcher, model, own, root, progress)
    per_searcher[key] = view
    return view


def _build_cached(searcher, model: WordVectors, own: Path, root: Path, progress: bool) -> CorpusView:
    older = None
    candidates = sorted((p for p in root.glob("*") if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    for folder in [*candidates, own]:
        try:
            older = CorpusView.load(folder, model)
            break
        except (OSError, ValueError, KeyError):
            continue
    keys, texts, digests = corpus_texts(searcher)
    view = CorpusView.build(model, keys, texts, digests, searcher.commit_id, older, progress)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{searcher.commit_id}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        view.save(tmp)
        final = root / searcher.commit_id
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for stale in candidates[KEEP_VIEWS - 1:]:
            shutil.rmtree(stale, ignore_errors=True)
    except OSError:
        pass  # a read-only index directory only loses the cache
    return view


@functools.lru_cache(maxsize=1)
def _blas():
    """The process's BLAS thread pools (scanned once; scanning per query costs more than the product)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class WordVecRetriever:
    """Query text -> SIF-weighted (or fine-tuned) word/character vectors -> FAISS top-k -> ids."""

    name = STAGE

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        self.model_dir, self.model, self.manifest = active_model(searcher)
        self.view = corpus_view(searcher, self.model_dir, self.model)
        # the fusion weight the fitter chose on held-out train queries (the recall stage's default for it)
        self.default_weight = float(self.manifest.get("fusion_weight", 0.5))

    def encode(self, plans: Sequence[QueryPlan]) -> np.ndarray:
        return self.model.encode([p.text for p in plans])

    def retrieve(self, plans: Sequence[QueryPlan], k: int) -> list[Ranking]:
        # a query with no known feature finds nothing
        return nearest(self.searcher, plans, k, self.encode, self.search, min_score=0.0)

    def search(self, vectors: np.ndarray, k: int, filters: Filters | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (keys, scores) by inner product: FAISS for batches, single-threaded numpy for a few queries
        (FAISS's OpenMP threads cost more than they save on one query: 33 ms against under 1 ms per query over
        19k titles on two busy cores); both exact, so they agree."""
        if len(vectors) > SMALL_BATCH:
            return self.view.index.search(vectors, k, filters)
        rows = np.arange(len(self.view.keys)) if filters is None else self.view.positions(filters.keys())
        rows = rows[rows >= 0]
        k = min(k, len(rows))
        keys, scores = np.full((len(vectors), k), -1, np.int64), np.zeros((len(vectors), k), np.float32)
        if k == 0:
            return keys, scores
        with _blas().limit(limits=1, user_api="blas"):  # one small product: BLAS threads only spin against each other
            sims = vectors @ (self.view.vectors if filters is None else self.view.vectors[rows]).T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable"), 1)
        return self.view.keys[rows[order]], np.take_along_axis(sims, order, 1).astype(np.float32)

    def coverage(self, plan: QueryPlan) -> float:
        """Share of the query's terms (by characters) the model has vectors for."""
        return self.model.coverage(plan.text)

    def similarity(self, plan: QueryPlan, ids: Sequence[str]) -> np.ndarray:
        """Cosine between the query's vector and each document's (NaN for ids this commit lacks)."""
        pos = self.view.positions(doc_keys(list(ids))) if len(ids) else np.zeros(0, np.int64)
        out = np.full(len(ids), np.nan, np.float32)
        if len(ids):
            q = self.encode([plan])[0]
            out[pos >= 0] = self.view.vectors[pos[pos >= 0]] @ q
        return out


@RETRIEVERS.register(STAGE)
def _wordvec(searcher: Any, options: dict[str, Any]) -> WordVecRetriever:
    parse_options("retrievers.wordvec", options, NoOptions)
    return WordVecRetriever(searcher)
