"""The intent classifier: query -> intent (or category) with a confidence, `oos` below the threshold.

Features (`features.py`) feed a multinomial logistic regression (sklearn; lbfgs or newton-cg by class
count). A k-fold cross-validation on the training data itself gives out-of-fold probabilities, on which
the oos threshold is chosen (`threshold.py`); then the model is fitted on all the data. The `oos`
examples are a class of their own (`train_oos="with"`, the default: it won on CLINC150's folds), only
threshold material ("without"), or both are cross-validated and the better kept ("auto").
A model directory holds `manifest.json` (kind "intent-classifier") and `weights.npz` (no
pickles); it is written to a temporary directory and renamed into place.
Misuse: passing the split you report as training data for the threshold; it is chosen on train folds.
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from souk.errors import ConfigError, DatasetError, ModelError
from souk.query.intent import familiarity
from souk.query.intent.data import OOS, LabeledQueries, catalog_queries
from souk.query.intent.features import Featurizer
from souk.query.intent.threshold import (DEFAULT_OOS_SHARE, ThresholdChoice, choose_threshold,
                                         choose_threshold_without_oos, decide)

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

KIND = "intent-classifier"
FORMAT = 1
WEIGHTS = "weights.npz"
THRESHOLD_RULE = ("maximise (1 - oos_share) * in_scope_accuracy + oos_share * oos_recall on out-of-fold predictions "
                  "of the training data; predict oos when the top probability is below the threshold "
                  "(without oos examples: held-out-class stand-ins as oos, the threshold capped at the "
                  "10% quantile of out-of-fold confidence)")
TRAIN_OOS = ("auto", "with", "without")
SOLVERS = ("auto", "lbfgs", "newton-cg")
# "auto": newton-cg up to this many classes, lbfgs above. Measured (2 cores, char+MiniLM features): newton-cg fits
# 10 catalog categories in 1 s where lbfgs takes 9 s (scipy's L-BFGS-B step costs ~1 us per weight), 30 intents
# in 1.8 s vs 3.4 s; at 75 intents lbfgs is faster (7.8 s vs 11 s), at 151 much faster (12 s vs 50 s).
NEWTON_MAX_CLASSES = 50


def default_features() -> dict[str, dict[str, Any]]:
    return {"char": {"ngrams": [1, 4], "min_df": 2}, "minilm": {"model": "all-MiniLM-L6-v2", "weight": 1.0}}


@dataclass(frozen=True)
class IntentConfig:
    """How to train. `features`: block name -> parameters (`features.INTENT_FEATURES`); `c`: inverse L2 strength
    of the logistic regression; `solver`: its optimizer ("auto" picks by the number of classes);
    `train_oos`: keep the `oos` examples as a class ("with"), use them only for the threshold ("without"),
    or pick by cross-validation ("auto", twice the time); `oos_share`: the share of out-of-scope queries
    assumed in traffic, which weighs oos recall against in-scope accuracy (`threshold.py`); `threshold`:
    fixed instead of chosen."""

    features: dict[str, dict[str, Any]] = field(default_factory=default_features)
    c: float = 30.0
    train_oos: str = "with"
    oos_share: float = DEFAULT_OOS_SHARE
    folds: int = 5
    max_iter: int = 300
    solver: str = "auto"
    seed: int = 13
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.train_oos not in TRAIN_OOS:
            raise ConfigError(f"train_oos must be one of {', '.join(TRAIN_OOS)}, got {self.train_oos!r}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not 0.0 < self.oos_share < 1.0:
            raise ConfigError(f"oos_share must be strictly between 0 and 1, got {self.oos_share}")
        if self.folds < 2:
            raise ConfigError(f"folds must be >= 2, got {self.folds}")
        if self.c <= 0:
            raise ConfigError(f"c must be > 0, got {self.c}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within 0..1, got {self.threshold}")


@dataclass(frozen=True)
class Prediction:
    """The predicted label (`oos` when out of scope), the top class's probability, and the best classes."""

    label: str
    confidence: float
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence, "top": [[lab, p] for lab, p in self.top]}


class IntentModel:
    """A trained classifier. Invariant: `coef` has one row per entry of `classes`, one column per feature."""

    def __init__(self, featurizer: Featurizer, classes: Sequence[str] | np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, threshold: float, info: dict[str, Any] | None = None,
                 familiarity: float | None = None, grams: np.ndarray | None = None):
        self.featurizer = featurizer
        self.classes = np.asarray(classes, dtype=object)
        self.coef = np.asarray(coef, dtype=np.float32)
        self._coef_t = np.ascontiguousarray(self.coef.T)  # (features, classes): sparse rows @ it without a copy
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.threshold = float(threshold)
        # trained without oos examples: a query whose wording is less familiar than this is oos (familiarity.py)
        self.familiarity = None if familiarity is None or grams is None else float(familiarity)
        self.grams = grams
        self.info: dict[str, Any] = dict(info or {})
        self.info.setdefault("metrics", {})

    @property
    def labels(self) -> list[str]:
        """Every label the model can answer: its classes, plus `oos`."""
        return sorted(set(self.classes.tolist()) | {OOS})

    @property
    def metrics(self) -> dict[str, Any]:
        """Measured figures by split ("cv" from training; callers add "dev" before saving)."""
        return self.info["metrics"]

    # ---- prediction ----------------------------------------------------------------------
    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), len(classes)) class probabilities (softmax of the linear scores)."""
        if not len(texts):
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        scores = np.asarray(self.featurizer.transform(list(texts)) @ self._coef_t) + self.intercept
        return _softmax(scores)

    def predict(self, texts: Sequence[str], k: int = 5, threshold: float | None = None) -> list[Prediction]:
        """One Prediction per text; below `threshold` (default: the model's) the label is `oos`."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts, not one string")
        probs = self.probabilities(texts)
        labels, confidence = decide(probs, self.classes, self.threshold if threshold is None else threshold)
        if self.familiarity is not None and self.grams is not None and threshold is None:
            labels[familiarity.shares(list(texts), self.grams) < self.familiarity] = OOS
        best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [Prediction(str(labels[i]), float(confidence[i]),
                           [(str(self.classes[j]), float(probs[i, j])) for j in best[i]]) for i in range(len(probs))]

    # ---- training ------------------------------------------------------------------------
    @classmethod
    def train(cls, data: LabeledQueries, config: IntentConfig | None = None, progress: bool = False) -> "IntentModel":
        """Fit on labeled queries; the threshold (and, with `train_oos="auto"`, whether `oos` is a class)
        is chosen by cross-validation on `data` itself."""
        config = config or IntentConfig()
        intents = data.intents
        if len(intents) < 2:
            raise DatasetError(f"{data.source or 'the data'}: an intent model needs at least 2 labels other than "
                               f"{OOS!r}, found {len(intents)}{': ' + intents[0] if intents else ''}")
        t0 = time.perf_counter()
        featurizer = Featurizer.from_config(config.features)
        _say(progress, f"features for {len(data)} queries ({', '.join(config.features)})")
        x = featurizer.fit_transform(data.texts, progress=progress)
        y = np.asarray(data.labels, dtype=object)
        t_features = time.perf_counter() - t0
        if data.oos_count == 0:
            variants = ["without"]
        else:
            variants = ["with", "without"] if config.train_oos == "auto" else [config.train_oos]
        cv: dict[str, ThresholdChoice] = {}
        for variant in variants:
            _say(progress, f"{config.folds}-fold cross-validation, oos {variant} a class")
            choose = choose_threshold if data.oos_count else choose_threshold_without_oos
            cv[variant] = choose(*_out_of_fold(x, y, variant, config), y, config.oos_share)
        chosen = max(variants, key=lambda v: cv[v].objective)  # ties: "with" first
        t_cv = time.perf_counter() - t0 - t_features
        _say(progress, f"final fit (oos {chosen} a class)")
        classes, coef, intercept, n_iter = _fit(x, y, chosen, config)
        threshold = cv[chosen].threshold if config.threshold is None else config.threshold
        gate, grams = None, None
        if data.oos_count == 0 and config.threshold is None:
            _say(progress, "familiarity of the wording, out of fold")
            gate, grams = (
                familiarity.calibrate(data.texts, config.folds, config.seed),
                familiarity.vocabulary(data.texts),
            )
        backend = getattr(next((b for b in featurizer.blocks if b.name == "minilm"), None), "backend", None)
        info = {
            "threshold_rule": THRESHOLD_RULE if config.threshold is None else "fixed by the caller",
            "hyper_parameters": {"c": config.c, "train_oos": config.train_oos, "oos_as_class": chosen == "with",
                                 "oos_share": config.oos_share,
                                 "folds": config.folds, "max_iter": config.max_iter,
                                 "solver": _solver(config, len(classes))},
            "seed": config.seed,
            "metrics": {"cv": {v: cv[v].to_dict() for v in variants}},
            "training": {"source": data.source, "queries": len(data), "intents": len(intents), "oos": data.oos_count,
                         "features": int(x.shape[1]), "iterations": n_iter, "encoder_backend": backend,
                         "seconds": {"features": round(t_features, 2), "cross_validation": round(t_cv, 2),
                                     "total": round(time.perf_counter() - t0, 2)}},
        }
        if gate is not None and grams is not None:
            info["familiarity"] = {"threshold": gate, "quantile": familiarity.DEFAULT_QUANTILE,
                                   "grams": int(len(grams))}
        return cls(featurizer, classes, coef, intercept, threshold, info, gate, grams)

    @classmethod
    def from_catalog(cls, searcher: Searcher, label_field: str, text_fields: Sequence[str] | None = None,
                     config: IntentConfig | None = None, progress: bool = False, level: int = 1) -> "IntentModel":
        """Category prediction for a shop without labeled queries: titles as pseudo-queries labeled with
        `label_field` (see `data.catalog_queries`). No oos examples: the threshold is calibrated on
        held-out classes (`threshold.choose_threshold_without_oos`) unless given."""
        model = cls.train(catalog_queries(searcher, label_field, text_fields, level), config, progress)
        model.info["training"]["label_field"] = label_field
        return model

    # ---- persistence ---------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        from souk.version import __version__

        return {"kind": KIND, "format": FORMAT, "labels": self.labels, "classes": self.classes.tolist(),
                "oos_label": OOS, "threshold": self.threshold, "familiarity_threshold": self.familiarity,
                "features": self.featurizer.config(),
                **self.info, "dev": self.metrics.get("dev"), "souk_version": __version__}

    def write_files(self, directory: str | Path) -> None:
        """Write `weights.npz` into an existing directory (the caller writes the manifest)."""
        arrays: dict[str, Any] = {f"features.{k}": v for k, v in self.featurizer.arrays().items()}
        if self.grams is not None:
            arrays["familiarity.grams"] = self.grams
        np.savez(Path(directory) / WEIGHTS, coef=self.coef, intercept=self.intercept,
                 classes=self.classes.astype(str), **arrays)

    def save(self, path: str | Path) -> Path:
        """Write the model directory atomically (temporary directory, then rename); an existing directory
        is replaced only when it holds an intent model or nothing."""
        from souk.models.store import seal

        path = Path(path)
        if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or _is_intent_model(path))):
            raise ModelError(f"{path} exists and is not an intent model directory; choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            self.write_files(tmp)
            seal(tmp, {**self.manifest(), "created": _now()})  # with the files' sha256, checked before numpy reads them
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "IntentModel":
        """Read a model directory; ModelError for a missing directory or a model of another kind."""
        from souk.models.store import read_model_manifest

        path = Path(path)
        if not path.is_dir():
            raise ModelError(f"{path}: no such model directory")
        manifest = read_model_manifest(path, kind=KIND, format=FORMAT)
        try:
            with np.load(path / WEIGHTS, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as e:  # a damaged zip, a missing array
            from souk.errors import ModelUnavailable

            raise ModelUnavailable(
                f"model {path.name}: unreadable {WEIGHTS} ({type(e).__name__}); retrain it"
            ) from None
        featurizer = Featurizer.from_config(manifest["features"])
        featurizer.restore({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("features.")})
        info = {k: v for k, v in manifest.items() if k in ("threshold_rule", "hyper_parameters", "seed", "metrics",
                                                            "training", "created", "familiarity")}
        gate = manifest.get("familiarity_threshold")
        grams = arrays.get("familiarity.grams")
        if gate is not None and (not isinstance(gate, (int, float)) or grams is None or grams.dtype != np.uint32):
            raise ModelError(f"{path}: the familiarity threshold or grams are damaged; train the model again")
        return cls(featurizer, arrays["classes"].tolist(), arrays["coef"], arrays["intercept"],
                   manifest["threshold"], info, gate, grams)


def _is_intent_model(path: Path) -> bool:
    from souk.models.store import read_model_manifest

    try:
        return read_model_manifest(path, verify=False).get("kind") == KIND
    except ModelError:
        return False


def _fit(x, y: np.ndarray, variant: str, config: IntentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(classes, coef (classes x features), intercept, iterations) of a logistic regression on the rows
    the variant keeps (`without`: in-scope rows only)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    keep = np.ones(len(y), dtype=bool) if variant == "with" else y != OOS
    clf = LogisticRegression(C=config.c, max_iter=config.max_iter, solver=_solver(config, len(set(y[keep].tolist()))),
                             random_state=config.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x[keep], y[keep].astype(str))
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: p(1) = sigmoid(w.x + b) = softmax([0, w.x + b])
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    return clf.classes_.astype(object), coef, intercept, int(np.max(clf.n_iter_))


def _solver(config: IntentConfig, n_classes: int) -> str:
    if config.solver != "auto":
        return config.solver
    return "newton-cg" if n_classes <= NEWTON_MAX_CLASSES else "lbfgs"


def _out_of_fold(x, y: np.ndarray, variant: str, config: IntentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, classes): each row predicted by a model that never saw it."""
    from sklearn.model_selection import KFold, StratifiedKFold

    classes = np.asarray(sorted(set(y.tolist()) - ({OOS} if variant == "without" else set())), dtype=object)
    column = {c: i for i, c in enumerate(classes)}
    probs = np.zeros((len(y), len(classes)), dtype=np.float32)
    smallest = min(np.unique(y, return_counts=True)[1])
    splitter = (StratifiedKFold if smallest >= config.folds else KFold)(config.folds, shuffle=True,
                                                                        random_state=config.seed)
    for train, test in splitter.split(np.zeros(len(y)), y):
        if len(set(y[train].tolist()) - {OOS}) < 2:
            continue  # too few labels in this fold to learn anything; its rows stay all-zero (never confident)
        fold_classes, coef, intercept, _ = _fit(x[train], y[train], variant, config)
        fold_probs = _softmax(np.asarray(x[test] @ coef.T) + intercept)
        probs[np.ix_(test, [column[c] for c in fold_classes])] = fold_probs
    return probs, classes


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = scores - scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    return (scores / scores.sum(axis=1, keepdims=True)).astype(np.float32)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        from souk.progress import err_console

        err_console.print(f"[dim]{message}[/dim]")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

