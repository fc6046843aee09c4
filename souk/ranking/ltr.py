"""The `ltr` stage: gradient-boosted trees (LightGBM lambdarank) over `souk.ranking.features`.

It scores the candidates the pipeline hands it (by default the top 100 of hybrid recall) with the index's
active `ltr` model (`DIR/models/ltr-<n>/`: `model.txt` and a manifest naming the features it was trained
with), fitted by `souk fit --stages ltr` (`souk.training.ltr`). Options: `model` pins a model directory
(e.g. "ltr-2"). Without a fitted model the stage is unavailable (the `full` pipeline then skips it); so is it
with a model that fails its checks (file hashes, `souk.models.lightgbm_text`), with a note naming the model.
The trees are evaluated with numpy (`lightgbm_text.Trees`, LightGBM's decisions to the last bit): a search
process loads no LightGBM.
Misuse: scoring with a model whose features differ from what this index computes; `LtrModel` refuses.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from souk.errors import ModelError, ModelUnavailable
from souk.models.lightgbm_text import MAX_BYTES, Trees, load_trees
from souk.models import store
from souk.models.store import FILES, read_model_manifest
from souk.query.plan import QueryPlan
from souk.ranking.clicks import active_click_model
from souk.plugins import parse_options
from souk.ranking.features import FeatureEnv, FeatureSet
from souk.ranking.stage import STAGES, Stage, StageContext, StageUnavailable
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

KIND = "ltr-lightgbm"
MODEL_FILE = "model.txt"


def read_trees(path: Path, manifest: dict[str, Any]) -> Trees:
    """The trees of a model directory: the bytes are read once, checked against the manifest's sha256 and by
    `load_trees` (predicted with numpy, no LightGBM loaded); `ModelUnavailable` names the model, never a path."""
    import hashlib

    file = Path(path) / MODEL_FILE
    try:
        if file.is_symlink() or (file.exists() and not file.is_file()):
            raise ModelUnavailable(f"model {path.name}: {MODEL_FILE} is not a regular file; refit it")
        if file.stat().st_size > MAX_BYTES:
            raise ModelUnavailable(f"model {path.name}: {MODEL_FILE} is over {MAX_BYTES >> 20} MB; refit it")
        data = file.read_bytes()
    except FileNotFoundError:
        raise ModelUnavailable(f"model {path.name} has no {MODEL_FILE}; refit it") from None
    except OSError as e:
        raise ModelUnavailable(f"model {path.name}: {MODEL_FILE} cannot be read ({type(e).__name__})") from None
    digest = (manifest.get(FILES) or {}).get(MODEL_FILE)
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ModelUnavailable(f"model {path.name} is damaged: {MODEL_FILE} does not match the sha256 in its manifest; "
                               "refit it, or activate another with souk models")
    try:
        return load_trees(data, MODEL_FILE)
    except ModelError as e:
        raise ModelUnavailable(
            f"model {path.name} is damaged: {e}; refit it, or activate another with souk models"
        ) from None


def read_model(path: Path) -> tuple[dict[str, Any], Any]:
    """(manifest, trees) of an ltr model directory (what `store.load` caches)."""
    manifest = read_model_manifest(path, kind=KIND)
    return manifest, read_trees(Path(path), manifest)


class LtrModel:
    """A fitted ranker's trees with the feature set it was trained on, checked against this snapshot."""

    def __init__(self, path: Path, searcher: Searcher):
        self.path = Path(path)
        self.manifest, self.trees = store.cached(self.path, read_model)
        spec = self.manifest.get("features") or {}
        models = {}
        if "clicks" in (spec.get("groups") or {}):
            clicks = active_click_model(searcher.path)
            if clicks is None:
                raise StageUnavailable(f"{self.path.name} uses feature `clicks` but this index has no click model; "
                                       "learn one with souk clicks learn, or refit ltr without it")
            models["clicks"] = clicks
        self.features = FeatureSet(FeatureEnv.open(searcher, models), list(spec.get("groups") or {}))
        self.features.check(spec, model=f"model {self.path.name}")
        if self.trees.num_feature() != len(self.features.columns):
            raise ModelUnavailable(f"model {self.path.name}: {MODEL_FILE} takes {self.trees.num_feature()} features, "
                                   f"its manifest names {len(self.features.columns)}: the model directory is "
                                   "inconsistent; refit it")

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not len(X):
            return np.zeros(0)
        return self.trees.predict(X, num_threads=1)

    def scores(self, plan: QueryPlan, candidates: Ranking) -> np.ndarray:
        return self.predict(self.features.matrix(plan, candidates))


class LtrStage(Stage):
    name = "ltr"

    def __init__(self, model: LtrModel):
        self.model = model

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        return candidates.take(slice(None), self.model.scores(plan, candidates))


@dataclass
class LtrOptions:
    """Stage `ltr`: `model`, a fitted model's name (default: the active one)."""

    model: str | None = None


@STAGES.register("ltr")
def _ltr(context: StageContext, options: dict[str, Any]) -> LtrStage:
    opts = parse_options("ltr", options, LtrOptions)
    path = store.resolve(context.index_path, "ltr", opts.model)
    if path is None:
        raise StageUnavailable("no fitted ltr model for this index; "
                               "run souk fit --index DIR --train BEIR_DIR --stages ltr")
    try:
        return LtrStage(LtrModel(path, context.searcher))
    except ModelUnavailable:
        raise
    except ModelError as e:  # features of another index, a click model it needs that fails: the stage is off
        raise ModelUnavailable(str(e).replace(str(path), f"model {path.name}")) from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:  # a manifest of the wrong shape
        raise ModelUnavailable(f"model {path.name}: its manifest is malformed ({type(e).__name__}); refit it") from None
