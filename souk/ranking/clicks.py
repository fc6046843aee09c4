"""The click model at serving time: a logistic regression over hashed (query, document) features, learned
online from impression logs by `souk.training.online` (FTRL-Proximal), and the `clicks` stage that adds
its logit to the scores it receives (an optional boost); the LTR stage reads the same logit as feature
`clicks`.

Features of a (query, document) pair, all hashed into 2^bits weights (no vocabulary to grow):
`bias`, `doc` (the document's own appeal), `query×doc` (this exact query, terms sorted), `term×doc`
(each query term), `keyword` and `term×keyword` (each keyword value of the document, e.g. brand=spigen,
so preferences carry to documents never clicked), and per number field marked `feature = true` its rank
within the shown list (centred, -0.5 .. 0.5). Position is no feature: learning corrects for it with
inverse propensity weights, so the logit is position-free.

Options of the stage (`{stage = "clicks", weight = 0.5}`): `weight` (default 1.0), `model` (pin a
model directory, e.g. "clicks-3"). Misuse: comparing logits of models with different `bits` or
features; a model's manifest names both.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ModelError, ModelUnavailable
from souk.index.keys import doc_key
from souk.index.terms import TermStore
from souk.models import store
from souk.models.store import read_model_manifest
from souk.query.plan import QueryPlan
from souk.plugins import parse_options
from souk.ranking.stage import STAGES, Stage, StageContext, StageUnavailable
from souk.types import Ranking

KIND = "clicks-ftrl"
STATE = "state.npz"
_M1, _M2, _M3 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
SALTS = {name: np.uint64(doc_key(f"souk-clicks:{name}"))
         for name in ("bias", "doc", "query", "term", "keyword", "number")}


def _mix(a: np.ndarray | np.uint64, b: np.ndarray | np.uint64) -> np.ndarray:
    """A 64-bit hash of two 64-bit values (splitmix64 finalizer), vectorized."""
    with np.errstate(over="ignore"):
        x = (np.asarray(a, dtype=np.uint64) * _M3) ^ np.asarray(b, dtype=np.uint64)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def string_key(text: str) -> np.uint64:
    return np.uint64(doc_key(text))


class ClickModel:
    """FTRL-Proximal state (`z`, `n` per hashed coordinate) and the hyper-parameters that turn it into weights."""

    def __init__(self, bits: int = 20, alpha: float = 0.1, beta: float = 1.0, l1: float = 0.5, l2: float = 1.0,
                 z: np.ndarray | None = None, n: np.ndarray | None = None, meta: dict[str, Any] | None = None):
        if not 8 <= bits <= 26:
            raise ModelError(f"bits: expected 8..26, got {bits}")
        self.bits, self.alpha, self.beta, self.l1, self.l2 = bits, float(alpha), float(beta), float(l1), float(l2)
        size = 1 << bits
        self.z = np.zeros(size) if z is None else np.asarray(z, dtype=np.float64)
        self.n = np.zeros(size) if n is None else np.asarray(n, dtype=np.float64)
        self.meta = dict(meta or {})
        self._bias = _mix(SALTS["bias"], np.uint64(0))
        self._number: dict[str, np.uint64] = {}

    @property
    def params(self) -> dict[str, Any]:
        return {"bits": self.bits, "alpha": self.alpha, "beta": self.beta, "l1": self.l1, "l2": self.l2}

    def weights(self, coords: np.ndarray) -> np.ndarray:
        """FTRL-Proximal's closed-form weights at `coords` (0 where |z| <= l1: the L1 sparsity)."""
        z, n = self.z[coords], self.n[coords]
        w = -(z - np.sign(z) * self.l1) / ((self.beta + np.sqrt(n)) / self.alpha + self.l2)
        return np.where(np.abs(z) <= self.l1, 0.0, w)

    # ---- features ----------------------------------------------------------------------------
    def features(self, terms: TermStore, text: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hashed features of each candidate: (candidate index, coordinate, value), flat arrays; the
        hashes of all candidates are mixed in three array operations."""
        n = len(rows)
        qterms = sorted(set(terms.analyze(text)))
        known = np.flatnonzero(rows >= 0)
        dkeys = terms.keys[rows[known]].astype(np.uint64)
        tks = _mix(SALTS["term"], np.asarray([string_key(t) for t in qterms], dtype=np.uint64))
        kw = [r.gather(rows) for r in terms.keywords.values()]
        kw_at = np.concatenate([k[1] for k in kw]) if kw else np.zeros(0, np.int64)
        kw_keys = _mix(SALTS["keyword"], np.concatenate([k[0] for k in kw]).astype(np.uint64) if kw
                       else np.zeros(0, np.uint64))
        qkey = _mix(SALTS["query"], string_key(" ".join(qterms)))
        nt, nd, nk = len(tks), len(known), len(kw_keys)
        # (a, b) pairs mixed into coordinates: doc, query x doc, term x doc, term x keyword
        a = np.concatenate([np.full(nd, SALTS["doc"]), np.full(nd, qkey), np.repeat(tks, nd), np.repeat(tks, nk)])
        b = np.concatenate([dkeys, dkeys, np.tile(dkeys, nt), np.tile(kw_keys, nt)])
        mixed = _mix(a, b)
        coords = [np.full(n, self._bias, dtype=np.uint64), mixed[:2 * nd + nt * nd], kw_keys, mixed[2 * nd + nt * nd:]]
        which = [np.arange(n), np.concatenate([known, known, np.tile(known, nt)]), kw_at, np.tile(kw_at, nt)]
        values = [np.ones(len(w)) for w in which]
        for name, numbers in terms.numbers.items():
            x = np.where(rows >= 0, numbers[np.maximum(rows, 0)], np.nan)
            ok = np.flatnonzero(~np.isnan(x))
            if len(ok) > 1:
                ranks = np.argsort(np.argsort(x[ok], kind="stable"), kind="stable") / (len(ok) - 1) - 0.5
                which.append(ok)
                coords.append(np.full(len(ok), self._number.get(name) or self._number_key(name), dtype=np.uint64))
                values.append(ranks)
        mask = np.uint64((1 << self.bits) - 1)
        return (np.concatenate(which).astype(np.int64), (np.concatenate(coords) & mask).astype(np.int64),
                np.concatenate(values))

    def _number_key(self, name: str) -> np.uint64:
        self._number[name] = np.uint64(_mix(SALTS["number"], string_key(name)))
        return self._number[name]

    def coordinate(self, kind: str, *parts: str) -> int:
        """The weight index of a named feature: ("keyword", field, value), ("number", field), ("doc", id)..."""
        from souk.index.terms import value_key

        mask = np.uint64((1 << self.bits) - 1)
        if kind == "keyword":
            field, value = parts
            return int(_mix(SALTS["keyword"], np.uint64(value_key(field, value))) & mask)
        if kind == "number":
            return int(_mix(SALTS["number"], string_key(parts[0])) & mask)
        if kind == "doc":
            return int(_mix(SALTS["doc"], np.uint64(doc_key(parts[0]))) & mask)
        if kind == "bias":
            return int(_mix(SALTS["bias"], np.uint64(0)) & mask)
        raise ValueError(f"unknown feature kind {kind!r}")

    def logits(self, which: np.ndarray, coords: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(which, weights=self.weights(coords) * values, minlength=n)

    def score(self, terms: TermStore, plan: QueryPlan | None, text: str, rows: np.ndarray) -> np.ndarray:
        """The position-free logit of each candidate (unknown documents get the bias and numbers only)."""
        which, coords, values = self.features(terms, text, rows)
        return self.logits(which, coords, values, len(rows))

    # ---- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        touched = np.flatnonzero(self.n)
        np.savez_compressed(Path(folder) / STATE, index=touched, z=self.z[touched], n=self.n[touched])

    @classmethod
    def load(cls, folder: Path) -> "ClickModel":
        manifest = read_model_manifest(folder, kind=KIND)
        try:
            model = cls(**manifest["params"], meta=manifest)
        except (TypeError, ValueError, KeyError) as e:  # params of the wrong shape in a hand-edited manifest
            raise ModelUnavailable(f"model {Path(folder).name}: its manifest's params are malformed "
                                   f"({type(e).__name__}); "
                                   "learn it again") from None
        try:
            data = np.load(Path(folder) / STATE)
            model.z[data["index"]] = data["z"]
            model.n[data["index"]] = data["n"]
        except (OSError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as e:
            raise ModelError(f"{folder}: unreadable click model state ({type(e).__name__}); learn it again") from None
        return model


def active_click_model(index_path: Path, pinned: str | None = None) -> ClickModel | None:
    """The index's active (or pinned) click model, loaded once by the model store; None when none was learned.
    Shared: never update it in place (`souk clicks learn` loads its own copy)."""
    path = store.resolve(index_path, "clicks", pinned)
    return None if path is None else store.cached(path, ClickModel.load)


class ClicksStage(Stage):
    """Adds `weight` × the click model's logit to the incoming scores."""

    name = "clicks"

    def __init__(self, context: StageContext, model: ClickModel, weight: float):
        from souk.ranking.features import feature_text

        self.terms = TermStore.open(context.searcher)
        self.model, self.weight = model, weight
        self._text = feature_text

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        rows = self.terms.rows(candidates.ids)
        logit = self.model.score(self.terms, plan, self._text(plan), rows)
        return candidates.take(slice(None), np.asarray(candidates.scores, dtype=np.float64) + self.weight * logit)


@dataclass
class ClicksOptions:
    """Stage `clicks`: `weight` of the click logit added to the previous scores, `model` (default: the active one)."""

    weight: float = 1.0
    model: str | None = None


@STAGES.register("clicks")
def _clicks(context: StageContext, options: dict[str, Any]) -> ClicksStage:
    parse_options("clicks", options, ClicksOptions)
    model = active_click_model(context.index_path, options.get("model"))
    if model is None:
        raise StageUnavailable("no click model for this index; learn one with souk clicks learn --index DIR --log FILE")
    return ClicksStage(context, model, float(options.get("weight", 1.0)))


def scores_for(model: ClickModel, terms: TermStore, text: str, ids: Sequence[str]) -> np.ndarray:
    """Logits of documents by id for a query text (what the simulation and `explain` read)."""
    return model.score(terms, None, text, terms.rows(ids))
