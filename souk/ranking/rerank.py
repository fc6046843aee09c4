"""The `cross` stage: a fitted cross-encoder rescores the head of the list, mixed with the previous
stage's scores the way its manifest says (`Combination`).

Options (`[pipelines.rerank.cross]` or `{stage = "cross", ...}`):
  model       a model of this index (`cross-2`) or a model directory path   (default: the active one)
  batch_size  pairs per forward pass                                        (default 32)
  max_length  tokens per pair                                               (default: the model's own)
  backend     "auto" | "torch-fp32" | "torch-bf16"                          (default "auto")
Without a fitted model the stage is unavailable (`souk fit --stages cross` makes one).
Misuse: a depth far beyond the one the model was fitted at (20): the mix with the previous stage's
scores was chosen on lists of that length.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from souk.errors import ConfigError, ModelError, ModelUnavailable
from souk.models.cross_encoder import PATHS, CrossEncoder, TokenCache
from souk.models.store import ModelStore
from souk.query.plan import QueryPlan
from souk.ranking.stage import StageContext, StageUnavailable, check_options, positive_int, register_stage
from souk.types import Ranking

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

OPTIONS: dict[str, Any] = {"model": str, "batch_size": int, "max_length": int, "backend": str}
TITLE_NAMES = ("title", "name", "product_title")


def doc_fields(schema) -> dict[str, Any]:
    """Which stored fields are the title and which the text: a field named like a title, else the first
    of several content fields; the remaining content fields are the text."""
    names = [n for n in schema.content_fields() if schema.fields[n].stored]
    title = next((n for n in names if n in TITLE_NAMES), names[0] if len(names) > 1 else None)
    return {"title": title, "text": [n for n in names if n != title]}


def doc_pair(doc: dict[str, Any] | None, fields: dict[str, Any]) -> tuple[str, str]:
    """(title, text) of a stored document by the model's fields ("" where absent)."""
    if not doc:
        return "", ""
    title = str(doc.get(fields["title"]) or "") if fields.get("title") else ""
    text = " ".join(str(doc[n]) for n in fields.get("text", []) if doc.get(n))
    return title, text


class CrossStage:
    """Scores candidates with a cross-encoder; document tokens are cached per snapshot."""

    name = "cross"

    def __init__(self, searcher: Searcher, model: CrossEncoder, fields: dict[str, Any] | None = None):
        self.searcher = searcher
        self.model = model
        self.fields = fields or model.fields
        self.cache = TokenCache()

    def rerank(self, plan: QueryPlan, candidates: Ranking) -> Ranking:
        if not len(candidates):
            return candidates
        packer = self.model.packer
        docs = self.cache.get_many(candidates.ids, self._tokens)
        query = packer.tokens([plan.text], packer.limits.query)[0]
        cross = self.model.score_pairs([packer.pack(query, d) for d in docs])
        scores = self.model.combination.apply(cross, np.asarray(candidates.scores, dtype=np.float32))
        return Ranking(candidates.ids, scores, {**candidates.signals, "cross_model": cross})

    def _tokens(self, ids: list[str]) -> list[tuple[list[int], list[int]]]:
        return self.model.packer.doc_tokens([doc_pair(d, self.fields) for d in self.searcher.docs(ids)])


def resolve_model(index_path: Path, name: str | None) -> Path:
    """The model directory: the active `cross` model, one of the index's by name, or a path."""
    store = ModelStore(index_path)
    if name is None:
        path = store.active("cross")
        if path is None:
            raise StageUnavailable("no fitted cross-encoder in this index; run `souk fit --stages cross`")
        return path
    own = store.resolve(name)
    candidate = own if own is not None and own.is_dir() else Path(name)
    if not candidate.is_dir():
        raise ConfigError(f"model: {name!r} is neither a model of this index nor a directory")
    return candidate


@lru_cache(maxsize=4)
def load_cross(path: str, backend: str, batch_size: int, max_length: int | None) -> CrossEncoder:
    """A loaded cross-encoder, shared by the pipelines of every snapshot (published models never change)."""
    return CrossEncoder(path, backend, batch_size, max_length)


def cross_stage(context: StageContext, options: dict[str, Any]) -> CrossStage:
    check_options("cross", options, OPTIONS)
    batch = positive_int("cross.batch_size", options.get("batch_size", 32))
    max_length = options.get("max_length")
    if max_length is not None and not 16 <= positive_int("cross.max_length", max_length) <= 512:
        raise ConfigError(f"cross.max_length: expected an integer in 16..512, got {max_length}")
    backend = options.get("backend", "auto")
    if backend not in ("auto", *PATHS):
        raise ConfigError(f"cross.backend: expected one of auto, {', '.join(PATHS)}, got {backend!r}")
    path = resolve_model(Path(context.index_path), options.get("model"))
    try:
        model = load_cross(str(path.resolve()), backend, batch, max_length)
    except ModelUnavailable:
        raise  # a damaged or refused model: the stage is off (skipped where optional), the search goes on
    except ModelError as e:
        raise ConfigError(f"cross.model: {e}") from e
    return CrossStage(context.searcher, model)


register_stage("cross")(cross_stage)

