"""Bi-encoder: text -> unit vectors, on the fastest inference path this machine runs well.

`Encoder` is the seam the rest of souk codes against: one method, `encode(texts) -> (n, dim) float32`.
`TransformerEncoder` is the real one: a model from the registry (a registered name or a model directory)
run on one path of `souk.models.backends`. `get_encoder` loads one per config (cached), resolving
`backend = "auto"` to the measured fastest near-lossless path.

The index encodes queries on the fastest exact path by default (`query_backend = "exact"`: fp32 on torch,
ONNX Runtime or OpenVINO, whichever measured fastest): queries are short, and exact queries halve the nDCG@10
gap of int8 documents on SciFact.

Misuse to avoid: encoding queries with another model than the documents (the model is named in the schema).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from souk.errors import ModelError
from souk.models.backends import (
    cached_choice,
    check_backend,
    choice_generation,
    choose_backend,
    load_forward,
    load_tokenizer,
    run_batches,
    unit_rows,
    unmeasured_exact,
)
from souk.models.registry import model_card


@runtime_checkable
class Encoder(Protocol):
    """Texts -> (len(texts), dim) float32 vectors, rows in input order; an empty list gives (0, dim)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EncoderConfig:
    """What decides the vectors: model (registered name or directory), truncation, normalization;
    `backend` only decides speed."""

    model: str = "all-MiniLM-L6-v2"
    max_length: int = 256
    normalize: bool = True
    batch_size: int = 32
    backend: str = "auto"


class TransformerEncoder:
    """A transformer bi-encoder (mean pooling) on one inference path."""

    def __init__(self, config: EncoderConfig):
        self.config = config
        self.backend = check_backend(config.backend)
        self.card = model_card(config.model)
        if self.card.kind != "bi-encoder":
            raise ModelError(f"{config.model} is a {self.card.kind}, not a bi-encoder: it scores pairs, it "
                             "does not embed texts")
        self.dim = self.card.dim
        self._forward = load_forward(config.backend, config.model)
        self._tok = load_tokenizer(config.model, config.max_length)

    @property
    def fingerprint(self) -> list:
        """Everything that decides this encoder's output (keys encoding checkpoints)."""
        c = self.config
        return [self.card.key, c.max_length, c.normalize, self.backend]

    def encode(self, texts: Sequence[str], on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), dim) float32; unit rows when `config.normalize`."""
        out = run_batches(self._forward, self._tok, texts, self.config.batch_size, self.dim, on_batch)
        return unit_rows(out) if self.config.normalize else out


@lru_cache(maxsize=8)
def _encoder(config: EncoderConfig) -> TransformerEncoder:
    return TransformerEncoder(config)


def get_encoder(config: EncoderConfig, probe: Sequence[str] = ()) -> TransformerEncoder:
    """A loaded encoder (cached per config); `backend="auto"` resolves via `choose_backend(config, probe)`,
    `backend="exact"` to the fastest measured exact path (while nothing was measured: onnx-fp32 when its export
    is built, else torch-fp32; a query never waits for a measurement)."""
    if config.backend == "auto":
        config = replace(config, backend=choose_backend(config, probe)["backend"])
    elif config.backend == "exact":
        config = _exact(config)
    return _encoder(config)


# How long a query's "exact" path, once resolved, is reused before the measurement file is read again (resolving
# reads the model directory's stamp and the file: 0.6 ms, per query). A measurement made in this process
# (`backends.choice_generation`) applies at once.
RESOLVE_EVERY_S = 5.0
_EXACT: dict[EncoderConfig, tuple[float, int, EncoderConfig]] = {}


def _exact(config: EncoderConfig) -> EncoderConfig:
    now, generation = time.monotonic(), choice_generation()
    hit = _EXACT.get(config)
    if hit is not None and now - hit[0] < RESOLVE_EVERY_S and hit[1] == generation:
        return hit[2]
    resolved = replace(config, backend=exact_path(config)[0])
    if len(_EXACT) > 64:
        _EXACT.clear()
    _EXACT[config] = (now, generation, resolved)
    return resolved


def exact_path(config: EncoderConfig) -> tuple[str, bool]:
    """The path `backend="exact"` takes on this machine now, and whether this machine measured it (else the
    unmeasured choice, `unmeasured_exact`). Reads small files only; `get_encoder` caches it per config."""
    choice = cached_choice(config)
    return (choice["exact"], True) if choice else (unmeasured_exact(config.model), False)


def load_encoder(model: str | Path, probe: Sequence[str] = (), **options) -> TransformerEncoder:
    """The encoder of a registered model name or a model directory; `options` are `EncoderConfig` fields."""
    return get_encoder(EncoderConfig(model=str(model), **options), probe)
