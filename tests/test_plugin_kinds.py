"""A plug-in of each kind, each ONE class: registered with `override()` for one test, used through
`Engine.search` (the fitter through `fit`), and gone after it. ARCHITECTURE.md ("Adding a plug-in")
points newcomers here."""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from souk.engine import Engine
from souk.errors import ConfigError
from souk.evaluation.datasets import Dataset
from souk.index.vectors import ENCODERS, VECTOR_BACKENDS
from souk.models.store import ModelStore
from souk.plugins import NoOptions, option_check, parse_options
from souk.query.plan import QUERY_STEPS, QueryPlan
from souk.ranking.stage import STAGES
from souk.retrieval.base import RETRIEVERS
from souk.training.fit import FITTERS, FitterEntry, fit
from souk.types import Ranking
from support import FIXTURES

FIELDS = {"sku": {"kind": "keyword"}, "title": {"kind": "text"}, "brand": {"kind": "keyword"},
          "price": {"kind": "number"}}
HASHED = {"kind": "vector",
          "params": {"encoder": "hashed-words", "model": "hashed-words", "dim": 64, "source": ["title"]}}


def make_index(path: Path, fields: dict | None = None, **config) -> Path:
    """The 12-product fixture under a schema with `fields` added and `config` sections ([pipelines], [query])."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import Schema

    schema = Schema.from_dict({"id": "sku", "fields": {**FIELDS, **(fields or {})}, **config})
    index = Index.create(path, schema)
    with index.writer() as w:
        w.add(read_catalog(FIXTURES / "products.jsonl"))
        w.commit()
    return path


BRANDS = {d["sku"]: d.get("brand") for d in map(json.loads, (FIXTURES / "products.jsonl").read_text().splitlines())}


def ids(result) -> list[str]:
    return [h.id for h in result.hits]


# ---- retriever ---------------------------------------------------------------------------------------
class ByIdRetriever:
    """Retriever `by-id`: every document passing the plan's filters, in id order (`descending` reverses it)."""

    name = "by-id"

    @dataclass
    class Options:
        descending: bool = False

    def __init__(self, searcher, options: dict):
        self.searcher = searcher
        self.options = parse_options("retrievers.by-id", options, self.Options)

    def retrieve(self, plans: list[QueryPlan], k: int) -> list[Ranking]:
        out = []
        for plan in plans:
            found = sorted(self.searcher.keys_to_ids(self.searcher.filter_keys(plan.filters))) if plan.filters \
                else sorted(self.searcher.ids())
            found = (found[::-1] if self.options.descending else found)[:k]
            out.append(Ranking(found, np.arange(len(found), 0, -1, dtype=np.float32)))
        return out

    def coverage(self, plan: QueryPlan) -> float:
        return 1.0


def test_a_retriever(tmp_path):
    recall = {"stage": "recall", "retrievers": ["by-id"], "options": {"by-id": {"descending": True}}}
    pipelines = {"by-id": {"stages": [recall]}}
    with RETRIEVERS.override("by-id", ByIdRetriever):
        engine = Engine.open(make_index(tmp_path / "ix", pipelines=pipelines))
        result = engine.search("", pipeline="by-id", filters=["brand=Spigen"], k=20)
        spigen = sorted(i for i, brand in BRANDS.items() if brand == "Spigen")
        assert ids(result) == spigen[::-1] and len(spigen) >= 2
        with pytest.raises(ConfigError, match=r"retrievers.by-id.descending: expected true or false, got 'yes'"):
            ByIdRetriever(engine.searcher(), {"descending": "yes"})
    assert "by-id" not in RETRIEVERS


# ---- ranking stage -----------------------------------------------------------------------------------
class PinStage:
    """Stage `pin`: the ids named in `first` go to the top, in that order; the rest keep their order."""

    name = "pin"

    @dataclass
    class Options:
        first: list[str] = field(default_factory=list)

    def __init__(self, context, options: dict):
        self.first = parse_options("pin", options, self.Options).first

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        rank = {doc: i for i, doc in enumerate(self.first)}
        order = sorted(range(len(candidates)), key=lambda i: (rank.get(candidates.ids[i], len(rank)), i))
        return candidates.take(np.asarray(order), np.arange(len(order), 0, -1, dtype=np.float32))


def test_a_stage(tmp_path):
    pipelines = {"pinned": {"stages": [{"stage": "recall"}, {"stage": "pin", "first": ["A3", "A2"]}]}}
    with STAGES.override("pin", PinStage):
        engine = Engine.open(make_index(tmp_path / "ix", pipelines=pipelines))
        plain = ids(engine.search("spigen case screen cake", pipeline="bm25", k=10))
        pinned = ids(engine.search("spigen case screen cake", pipeline="pinned", k=10))
        assert {"A2", "A3"} <= set(plain) and pinned[:2] == ["A3", "A2"]
        assert pinned[2:] == [i for i in plain if i not in ("A2", "A3")]
    assert "pin" not in STAGES
    with pytest.raises(ConfigError, match="unknown stage 'pin'"):
        Engine.open(tmp_path / "ix")  # the config names a stage no longer registered


# ---- query step --------------------------------------------------------------------------------------
class AliasStep:
    """Query step `alias`: whole words replaced as `[query.alias] words = {old = "new"}` says."""

    @dataclass
    class Options:
        words: dict[str, str] = field(default_factory=dict, metadata=option_check(
            lambda v: all(isinstance(x, str) for x in v.values()), "a table of word = replacement"))

    def __init__(self, searcher, options: dict):
        self.words = parse_options("query.alias", options, self.Options).words

    def rewrite(self, plan: QueryPlan) -> QueryPlan:
        text = re.sub(r"\w+", lambda m: self.words.get(m.group(0).lower(), m.group(0)), plan.text)
        if text != plan.text:
            plan.notes.append(f"alias: searched {text!r}")
            plan.text = text
        return plan


def test_a_query_step(tmp_path):
    query = {"steps": ["syntax", "alias"], "alias": {"words": {"cellphone": "iphone"}}}
    with QUERY_STEPS.override("alias", AliasStep):
        engine = Engine.open(make_index(tmp_path / "ix", query=query))
        result = engine.search("cellphone case", pipeline="keyword", k=5, explain=True)
        assert ids(result)[0] == "A1" and "alias" in result.plan["steps"] and result.searched == "iphone case"
    assert "alias" not in QUERY_STEPS


# ---- encoder -----------------------------------------------------------------------------------------
class HashedWords:
    """Encoder `hashed-words`: each word counted in one of `dim` buckets (a stand-in for a remote service:
    any class with `encode(texts) -> (n, dim)` works; `queries` says which side it encodes)."""

    calls = 0

    def __init__(self, params: dict, queries: bool = False, probe=()):
        self.dim = params["dim"]

    def encode(self, texts: list[str]) -> np.ndarray:
        HashedWords.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out


def test_an_encoder(tmp_path):
    with ENCODERS.override("hashed-words", HashedWords):
        engine = Engine.open(make_index(tmp_path / "ix", {"embedding": HASHED}))
        calls = HashedWords.calls
        result = engine.search("iphone case", pipeline="dense", k=3)
        assert ids(result)[0] == "A1" and HashedWords.calls > calls  # the documents and the query went through it
        assert engine.searcher().index.manifest["vectors"]["embedding"]["encoder"] == "hashed-words"
    assert "hashed-words" not in ENCODERS


# ---- vector backend ----------------------------------------------------------------------------------
class ArrayBackend:
    """Vector backend `array`: every vector in one numpy array, brute force; `min_score` is its own param.
    It gets the plan's filters structured (`filters.items`) and evaluates them itself here through the keys."""

    @dataclass
    class Params:
        min_score: float = -1.0

    seen: list = []

    def __init__(self, dim: int, params: dict):
        self.min_score = params["min_score"]
        self.keys, self.vectors = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)

    def add(self, keys, vectors):
        self.keys, self.vectors = np.concatenate([self.keys, keys]), np.vstack([self.vectors, vectors])

    def remove(self, keys):
        keep = ~np.isin(self.keys, keys)
        self.keys, self.vectors = self.keys[keep], self.vectors[keep]

    def search(self, queries, k, filters):
        ArrayBackend.seen.append(None if filters is None else [str(f) for f in filters.items])
        ok = np.ones(len(self.keys), bool) if filters is None else np.isin(self.keys, filters.keys())
        sims = queries @ self.vectors[ok].T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        keys, scores = np.full((len(queries), k), -1, np.int64), np.zeros((len(queries), k), np.float32)
        keys[:, :top.shape[1]], scores[:, :top.shape[1]] = self.keys[ok][top], np.take_along_axis(sims, top, 1)
        keys[scores <= self.min_score] = -1
        return keys, scores

    def save(self, folder: Path):
        np.savez(folder / "array.npz", keys=self.keys, vectors=self.vectors)

    @classmethod
    def open(cls, folder: Path, params: dict):
        data = np.load(folder / "array.npz")
        backend = cls(data["vectors"].shape[1], params)
        backend.keys, backend.vectors = data["keys"], data["vectors"]
        return backend


def test_a_vector_backend(tmp_path):
    params = {**HASHED["params"], "index": "array", "min_score": 0.1}
    with VECTOR_BACKENDS.override("array", ArrayBackend), ENCODERS.override("hashed-words", HashedWords):
        engine = Engine.open(make_index(tmp_path / "ix", {"embedding": {"kind": "vector", "params": params}}))
        result = engine.search("iphone case", pipeline="dense", filters=["brand=Spigen"], k=10)
        assert ids(result) and all(BRANDS[i] == "Spigen" for i in ids(result))
        assert "A2" not in ids(result)  # a Spigen product sharing no word with the query: under `min_score`
        assert ArrayBackend.seen[-1] == ["brand=Spigen"]  # the structured filters reached the backend
        assert engine.searcher().index.manifest["vectors"]["embedding"]["min_score"] == 0.1
        assert "ef_search" not in engine.searcher().index.manifest["vectors"]["embedding"]  # FAISS's keys stay FAISS's
        with pytest.raises(ConfigError, match=r"fields.embedding.params.min_score: expected a number, got 'high'"):
            make_index(tmp_path / "bad", {"embedding": {"kind": "vector", "params": {**params, "min_score": "high"}}})
    assert "array" not in VECTOR_BACKENDS


# ---- fitter ------------------------------------------------------------------------------------------
class CountingFitter:
    """Fitter `counting`: "learns" how many judged queries it saw; writes its model into `job.workdir` and
    returns the manifest fields (fit publishes and activates it)."""

    Options = NoOptions

    def __call__(self, job) -> dict:
        parse_options("counting", job.options, self.Options)
        (job.workdir / "count.txt").write_text(str(len(job.train.queries)))
        return {"kind": "counting", "dev": {"queries": len(job.dev.queries) if job.dev else 0}}


def test_a_fitter(tmp_path):
    data = Dataset.from_parts({"q1": "iphone case", "q2": "cake"}, {"q1": {"A1": 1}, "q2": {"A3": 1}},
                              name="tiny", split="train")
    path = make_index(tmp_path / "ix")
    with FITTERS.override("counting", FitterEntry(CountingFitter(), applies=lambda schema: False)):
        [outcome] = fit(path, data, None, ["counting"], budget_s=30, progress=False)
        assert (ModelStore(path).active("counting") / "count.txt").read_text() == "2"
        assert outcome.manifest["active"] is True
    assert "counting" not in FITTERS
    with pytest.raises(ConfigError, match="unknown stage 'counting'"):
        fit(path, data, None, ["counting"], budget_s=30, progress=False)
