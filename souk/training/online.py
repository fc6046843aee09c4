"""Online learning from clicks: impression logs -> FTRL-Proximal logistic regression, corrected for position.

The log is JSONL, one impression a line:
    {"request": "r1", "query": "iphone case", "shown": ["A1", "A7", "A2"], "clicked": ["A7"],
     "purchased": ["A7"], "ts": "2025-01-31T12:00:00Z"}
(`purchased` and `ts` are optional; `shown` is in display order, rank 1 first.)

Users mostly click what they see, and they see the top: a click at rank 1 says less than one at rank 8.
The position-bias model gives the examination probability of rank r, p(r) = max(r^-eta, floor); each shown
document contributes the logistic-loss gradient with its click divided by p(r) (inverse propensity
weighting: in expectation the gradient of the loss on true relevance), so the learned logit carries no
position and serves as is. Updates are FTRL-Proximal (McMahan et al. 2013: per-coordinate learning rates,
L1 for sparsity, L2), one impression a mini-batch, in numpy over the hashed features of
`souk.ranking.clicks`. `souk clicks learn` continues from the active model and publishes a new version;
a log already learned (same SHA-1) is refused, so re-running never counts clicks twice.
Misuse: a log whose `shown` lists are not in display order (the correction would be wrong).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from souk.errors import ConfigError, DatasetError
from souk.evaluation.datasets import numbered_lines
from souk.index.terms import TermStore
from souk.models.store import ModelStore
from souk.progress import progress_bar
from souk.ranking.clicks import KIND, ClickModel
from souk.ranking.features import feature_text

DEFAULT_BIAS = {"eta": 1.0, "floor": 0.1}
PURCHASE_WEIGHT = 3.0  # a purchase counts as a click this many times over


@dataclass
class Impression:
    request: str
    query: str
    shown: list[str]
    clicked: set[str] = field(default_factory=set)
    purchased: set[str] = field(default_factory=set)
    ts: Any = None
    ranks: list[int] | None = None  # display rank of each id in `shown` (1 first); None: 1, 2, 3, ...


def read_log(path: str | Path) -> Iterator[Impression]:
    """Impressions of a JSONL log; DatasetError names the line of a malformed one."""
    path = Path(path)
    for lineno, line in numbered_lines(path, "click log"):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # an integer past 4300 digits, deep nesting
            raise DatasetError(f"{path}:{lineno}: not a readable JSON object ({type(e).__name__})") from None
        if not isinstance(rec, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object")
        query, shown = rec.get("query"), rec.get("shown")
        if not isinstance(query, str) or not isinstance(shown, list) or not all(isinstance(s, str) for s in shown):
            raise DatasetError(f'{path}:{lineno}: an impression needs "query" (text) and "shown" (a list of ids)')
        lists = {}
        for key in ("clicked", "purchased"):
            value = rec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise DatasetError(f'{path}:{lineno}: "{key}" must be a list of ids')
            stray = set(value) - set(shown)
            if stray:
                raise DatasetError(f'{path}:{lineno}: "{key}" names {sorted(stray)[0]!r}, which was not shown')
            lists[key] = set(value)
        yield _impression(str(rec.get("request", lineno)), query, shown, lists["clicked"], lists["purchased"],
                          rec.get("ts"))


def _impression(request: str, query: str, shown: list[str], clicked: set[str], purchased: set[str],
                ts: Any) -> Impression:
    """An id repeated in `shown` counts once, at its first (highest) display rank: its click is one click,
    whatever the log repeats; the other ids keep their display ranks."""
    first: dict[str, int] = {}
    for rank, doc_id in enumerate(shown, 1):
        first.setdefault(doc_id, rank)
    if len(first) == len(shown):
        return Impression(request, query, shown, clicked, purchased, ts)
    return Impression(request, query, list(first), clicked, purchased, ts, list(first.values()))


@dataclass
class PositionBias:
    """Examination probability of rank r (from 1): max(r^-eta, floor). eta = 0 means no correction."""

    eta: float = DEFAULT_BIAS["eta"]
    floor: float = DEFAULT_BIAS["floor"]

    def propensity(self, ranks: np.ndarray) -> np.ndarray:
        return np.maximum(np.asarray(ranks, dtype=np.float64) ** -self.eta, self.floor)


@dataclass
class LearnStats:
    impressions: int = 0
    examples: int = 0
    clicks: int = 0
    purchases: int = 0
    unknown: int = 0  # shown ids this index does not hold (skipped)
    logloss: float = 0.0  # mean IPW-free log loss before each update (progressive validation)

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def update(model: ClickModel, which: np.ndarray, coords: np.ndarray, values: np.ndarray, clicked: np.ndarray,
           propensity: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """One FTRL-Proximal step on one impression's examples; returns the predicted click probabilities."""
    n = len(clicked)
    p = 1.0 / (1.0 + np.exp(-np.clip(model.logits(which, coords, values, n), -35, 35)))
    g_example = weight * (p - clicked / propensity)
    uc, inv = np.unique(coords, return_inverse=True)
    g = np.bincount(inv, weights=g_example[which] * values, minlength=len(uc))
    w = model.weights(uc)
    n_old = model.n[uc]
    sigma = (np.sqrt(n_old + g * g) - np.sqrt(n_old)) / model.alpha
    model.z[uc] += g - sigma * w
    model.n[uc] = n_old + g * g
    return p


def learn(model: ClickModel, terms: TermStore, impressions: Iterable[Impression], bias: PositionBias,
          planner: Any = None, progress: bool = False, total: int | None = None) -> LearnStats:
    """Update `model` in place from `impressions`, in order."""
    stats = LearnStats()
    loss = 0.0
    with progress_bar("learning from clicks", total, enabled=progress) as advance:
        for imp in impressions:
            rows = terms.rows(imp.shown)
            ranks = np.asarray(imp.ranks) if imp.ranks else np.arange(1, len(rows) + 1)
            known = rows >= 0
            stats.unknown += int((~known).sum())
            stats.impressions += 1
            advance()
            if not known.any():
                continue
            ids = [i for i, k in zip(imp.shown, known) if k]
            rows, ranks = rows[known], ranks[known]
            clicked = np.asarray([i in imp.clicked for i in ids], dtype=np.float64)
            bought = np.asarray([i in imp.purchased for i in ids], dtype=np.float64)
            text = feature_text(planner.plan(imp.query)) if planner is not None else imp.query
            which, coords, values = model.features(terms, text, rows)
            p = update(model, which, coords, values, clicked, bias.propensity(ranks), 1.0
                       + (PURCHASE_WEIGHT - 1.0) * bought)
            p = np.clip(p, 1e-7, 1 - 1e-7)
            loss -= float(np.sum(clicked * np.log(p) + (1 - clicked) * np.log(1 - p)))
            stats.examples += len(rows)
            stats.clicks += int(clicked.sum())
            stats.purchases += int(bought.sum())
    stats.logloss = loss / max(stats.examples, 1)
    return stats


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def learn_log(index_path: str | Path, log: str | Path, eta: float | None = None, floor: float | None = None,
              params: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """`souk clicks learn`: continue the index's active click model (or start one) on `log`, publish it as
    a new `clicks-<n>` and make it active. Hyper-parameters are fixed when the model is first created."""
    from souk.index import Index
    from souk.query.understand import planner_for

    index = Index.open(index_path)
    log = Path(log)
    digest = _digest(log) if log.is_file() else None
    impressions = list(read_log(log))
    searcher = index.searcher()
    terms = TermStore.open(searcher)
    store = ModelStore(index.path)
    active = store.active("clicks")
    given = {k: v for k, v in (params or {}).items() if v is not None}
    if active is not None:
        model = ClickModel.load(active)
        history = list(model.meta.get("logs", []))
        bias_cfg = dict(model.meta.get("position_bias", DEFAULT_BIAS))
        for key, value in [*given.items(), ("eta", eta), ("floor", floor)]:
            current = model.params.get(key, bias_cfg.get(key))
            if value is not None and current is not None and float(value) != float(current):
                raise ConfigError(f"--{key}: the click model {active.name} was created with {key}={current:g}; "
                                  f"it keeps its settings (start afresh in a new index or drop --{key})")
        if digest is not None and any(h.get("sha1") == digest for h in history):
            raise ConfigError(f"{log}: this log (sha1 {digest[:12]}) was already learned by {active.name}; "
                              "learning it again would count its clicks twice")
    else:
        model = ClickModel(**given)
        history = []
        bias_cfg = {"eta": DEFAULT_BIAS["eta"] if eta is None else float(eta),
                    "floor": DEFAULT_BIAS["floor"] if floor is None else float(floor)}
    if bias_cfg["eta"] < 0 or not 0 < bias_cfg["floor"] <= 1:
        raise ConfigError(f"position bias: eta must be >= 0 and floor in (0, 1], got eta={bias_cfg['eta']}, "
                          f"floor={bias_cfg['floor']}")
    t0 = time.monotonic()
    stats = learn(model, terms, impressions, PositionBias(**bias_cfg), planner_for(searcher), progress,
                  len(impressions))
    workdir = store.new("clicks")
    try:
        model.save(workdir)
        entry = {"path": str(log), "sha1": digest, **stats.to_dict()}
        manifest = {"kind": KIND, "params": model.params, "position_bias": bias_cfg, "logs": [*history, entry],
                    "impressions": sum(h.get("impressions", 0) for h in history) + stats.impressions,
                    "continued_from": active.name if active is not None else None,
                    "seconds": round(time.monotonic() - t0, 2)}
        path = store.publish("clicks", workdir, manifest)
    except BaseException:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return {"model": path.name, "continued_from": manifest["continued_from"], **stats.to_dict(),
            "total_impressions": manifest["impressions"], "seconds": manifest["seconds"]}
