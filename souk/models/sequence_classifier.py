"""Cross-encoder: (query, document) pairs -> relevance scores, for re-ranking a short candidate list.

`PairScorer` is the seam rankers code against: one method, `score(pairs) -> (n,) float32`, higher is
more relevant. `SequenceClassifier` is the real one: a Hugging Face sequence-classification model
directory (what a trainer saves with `save_pretrained`, plus its fast tokenizer), found through the model
registry like any other model. One output logit is the score; two logits score by `logit[1] - logit[0]`.

Misuse to avoid: scoring thousands of candidates per query (a cross-encoder reads every pair in full;
give it the top tens from a cheaper stage), or comparing scores across models.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from souk.errors import ModelError
from souk.models.backends import quiet_transformers
from souk.models.registry import ModelCard, model_card


@runtime_checkable
class PairScorer(Protocol):
    """(query, document) pairs -> (len(pairs),) float32 scores in input order; higher is more relevant."""

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


class SequenceClassifier:
    """A transformer sequence classifier scoring pairs in fp32, in length-sorted batches."""

    def __init__(self, card: ModelCard, max_length: int = 256, batch_size: int = 16):
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModelForSequenceClassification

        if card.kind != "cross-encoder":
            raise ModelError(f"{card.name} is a {card.kind}, not a cross-encoder (a sequence-classification model)")
        quiet_transformers()
        self.card = card
        self.batch_size = batch_size
        self._net = AutoModelForSequenceClassification.from_pretrained(str(card.path), dtype=torch.float32).eval()
        labels = self._net.config.num_labels
        if labels not in (1, 2):
            raise ModelError(f"{card.path}: {labels} output labels; a cross-encoder has 1 (a score) or 2 (no/yes)")
        self._types = "token_type_ids" in inspect.signature(self._net.forward).parameters
        self._tok = Tokenizer.from_file(str(card.path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length, strategy="longest_first")

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import torch

        out = np.zeros(len(pairs), dtype=np.float32)
        if not len(pairs):
            return out
        encs = self._tok.encode_batch([(str(q), str(d)) for q, d in pairs])
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = int(lengths[rows].max())
            ids, types, mask = (np.zeros((len(rows), width), dtype=np.int64) for _ in range(3))
            for j, r in enumerate(rows):
                n = lengths[r]
                ids[j, :n], types[j, :n], mask[j, :n] = encs[r].ids, encs[r].type_ids, 1
            inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            if self._types:
                inputs["token_type_ids"] = torch.from_numpy(types)
            with torch.inference_mode():
                logits = self._net(**inputs).logits.float().numpy()
            out[rows] = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
        return out


def load_cross_encoder(model: str | Path, max_length: int = 256, batch_size: int = 16) -> SequenceClassifier:
    """The cross-encoder of a registered name or a model directory (`ModelError` if it is not one)."""
    return SequenceClassifier(model_card(model), max_length=max_length, batch_size=batch_size)
