"""Transformer weights for training: a new cross-encoder head, the layer budget, saving with the tokenizer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from souk.errors import ModelError
from souk.training.weights import base_layers, layers_within, new_model, save_model

pytest.importorskip("transformers")


def test_layers_fit_the_latency_budget():
    assert [layers_within(5760, 20, n, 6) for n in (32, 96, 1000)] == [6, 3, 1]
    assert layers_within(10**9, 20, 32, 4) == 4 and layers_within(1, 20, 32, 4) == 1


def test_a_new_head_is_seeded_and_a_cut_model_round_trips(tiny_encoder, tmp_path):
    from transformers import AutoModelForSequenceClassification

    layers = json.loads((tiny_encoder / "config.json").read_text())["num_hidden_layers"]
    assert base_layers(tiny_encoder) == layers >= 2
    a, b = new_model(tiny_encoder, 7), new_model(tiny_encoder, 7)
    assert a.config.num_labels == 1
    assert np.array_equal(a.classifier.weight.detach().numpy(), b.classifier.weight.detach().numpy())
    net = new_model(tiny_encoder, 1, layers=1)
    assert len(net.base_model.encoder.layer) == 1
    save_model(net, tmp_path / "m", tiny_encoder)
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    assert AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "m")).config.num_hidden_layers == 1
    with pytest.raises(ModelError, match="at least one layer"):
        new_model(tiny_encoder, 1, layers=0)
