"""Transformer weights for training: a new cross-encoder (a one-output head on encoder weights, fewer layers
when the latency budget asks), the layer count a budget allows, and saving a trained transformer with its
tokenizer (what `souk.models` loads back). Used by the `cross` and `bi` fitters and `souk bench rerank`.
Misuse: saving a model and then writing files the manifest's seal does not cover (the store seals at publish).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from souk.errors import ConfigError, ModelError
from souk.models.backends import quiet_transformers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def new_model(base_dir: Path, seed: int, layers: int | None = None, pooling: str = "cls"):
    """A sequence-classification model (one output) from the encoder weights in `base_dir`, keeping its
    first `layers` transformer layers (all when None); the head is new, initialized from `seed`, and reads
    `pooling` (`cross_encoder.POOLINGS`, recorded in its config)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from souk.models.cross_encoder import POOLINGS, mean_poolable, with_pooling

    if pooling not in POOLINGS:
        raise ConfigError(f"cross.pooling: expected one of {', '.join(POOLINGS)}, got {pooling!r}")
    quiet_transformers()
    torch.manual_seed(seed)
    net = AutoModelForSequenceClassification.from_pretrained(str(base_dir), num_labels=1)
    if pooling != "cls" and mean_poolable(net):  # (another architecture keeps its own head)
        net.config.souk_pooling = pooling
        with_pooling(net)
    stack = net.base_model.encoder.layer
    if layers is not None and layers < len(stack):
        if layers < 1:
            raise ModelError(f"a cross-encoder needs at least one layer, got {layers}")
        net.base_model.encoder.layer = stack[:layers]
        net.config.num_hidden_layers = layers
    return net


def base_layers(base_dir: Path) -> int:
    """How many transformer layers the model in `base_dir` has."""
    return int(json.loads((Path(base_dir) / "config.json").read_text())["num_hidden_layers"])


def layers_within(budget: int, depth: int, pair_tokens: float, most: int) -> int:
    """The most layers (at least one, at most `most`) whose cost for `depth` pairs of `pair_tokens`
    tokens stays within `budget` layer-tokens per query."""
    return max(1, min(most, int(budget // max(depth * pair_tokens, 1.0))))


def save_model(net, folder: Path, tokenizer_dir: Path) -> None:
    """Weights (safetensors) and the tokenizer files beside them; the manifest is the fitter's to write."""
    folder.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(str(folder))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file() and Path(tokenizer_dir).resolve() != folder.resolve():
            shutil.copyfile(tokenizer_dir / name, folder / name)

