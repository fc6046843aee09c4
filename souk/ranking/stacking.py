"""Stacking fusion: a LightGBM ranker over the retrievers' scores and ranks, in place of the fixed fusion.

The recall stage fuses its lists as configured (weighted min-max by default), then, where the index has an
active `fusion` model fitted for the same retrievers (`souk fit`, option `fusion.stacking`: see
`souk.training.stacking`), reorders the fused candidates by the model's score over
`souk.retrieval.fusion.stack_features`. The fitter activates a model only when it beat the fixed fusion on
held-out train queries. Model files are untrusted: the manifest is checked by the one reader and the model
text by `souk.models.lightgbm_text`, whose `Trees` score it with numpy.
Misuse: a model fitted for other retrievers (it is not used: the columns would mean other things).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from souk.errors import ModelError
from souk.retrieval.fusion import restack, stack_columns, stack_features
from souk.types import Ranking

KIND = "fusion-stacking"
STAGE = "fusion"


class Stacker:
    """A fitted stacking model for the lists of `retrievers` (in that order)."""

    def __init__(self, path: Path):
        from souk.models.store import read_model_manifest
        from souk.ranking.ltr import read_trees

        self.path = Path(path)
        self.manifest = read_model_manifest(self.path, kind=KIND)
        self.retrievers = [str(n) for n in self.manifest["retrievers"]]
        if self.manifest.get("columns") != stack_columns(self.retrievers):
            raise ModelError(f"model {self.path.name}: its columns are not this souk's stacking features; refit it")
        self.trees = read_trees(self.path, self.manifest)
        self.prior = float(self.manifest.get("prior", 0.0))  # the fixed fusion's score times this, plus the trees
        if self.trees.num_feature() != len(self.manifest["columns"]):
            raise ModelError(f"model {self.path.name}: the trees read {self.trees.num_feature()} features")

    def rerank(self, fused: Sequence[Ranking], lists: Sequence[Sequence[Ranking]]) -> list[Ranking]:
        """Each fused list (with its input lists, in `retrievers` order) reordered by the model, scored at once."""
        blocks = [stack_features(f, ls) for f, ls in zip(fused, lists)]
        if not any(len(b) for b in blocks):
            return list(fused)
        x = np.concatenate(blocks)
        scores = self.trees.predict(x, num_threads=1) + self.prior * x[:, -3]
        out, start = [], 0
        for f, b in zip(fused, blocks):
            out.append(restack(f, scores[start:start + len(b)]) if len(b) else f)
            start += len(b)
        return out


def _load(path: Path) -> Stacker:
    return Stacker(path)


def active_stacker(index_path: Any, retrievers: Sequence[str]) -> Stacker | None:
    """The index's active stacking model when it was fitted for exactly `retrievers`; None otherwise (none
    active, other retrievers, or a model failing its checks: the fixed fusion then serves)."""
    from souk.models import store

    try:
        path = store.resolve(index_path, STAGE)
        model = None if path is None else store.cached(path, _load)
    except ModelError:
        return None
    return model if model is not None and model.retrievers == list(retrievers) else None
