"""BERT written as ONNX from its weights computes what the torch model computes, and refuses what it cannot read."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from souk.models.onnx_bert import NotBert, bert_config, writable, write_bert_onnx
from model_fakes import synthetic_texts

ort = pytest.importorskip("onnxruntime")


def _batch(path, texts, pairs=False):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_padding()
    enc = tok.encode_batch([(t, t[::-1]) for t in texts] if pairs else texts)
    return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}


def _torch_mean(path, feeds):
    import torch
    from transformers import AutoModel

    from souk.models.backends import mean_pool

    net = AutoModel.from_pretrained(str(path)).eval()
    with torch.inference_mode():
        mask = torch.from_numpy(feeds["attention_mask"])
        return mean_pool(net(input_ids=torch.from_numpy(feeds["input_ids"]), attention_mask=mask).last_hidden_state,
                         mask).numpy()


def _run(model, feeds):
    session = ort.InferenceSession(str(model))
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
def test_the_mean_pooled_graph_matches_the_torch_model_on_padded_batches(tiny_encoder, tmp_path, act):
    model = tmp_path / "model"
    shutil.copytree(tiny_encoder, model)
    config = json.loads((model / "config.json").read_text())
    if config.get("hidden_act") != act:  # the same weights under another activation: torch reads it too
        (model / "config.json").write_text(json.dumps(config | {"hidden_act": act}))
    feeds = _batch(model, synthetic_texts(12, seed=5) + ["x"])  # lengths differ: padding and the mask matter
    write_bert_onnx(model, tmp_path / "m.onnx", head="mean")
    ours, reference = _run(tmp_path / "m.onnx", feeds), _torch_mean(model, feeds)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-5


def test_the_first_logit_graph_matches_the_sequence_classifier_with_token_types(tiny_cross_encoder, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    feeds = _batch(tiny_cross_encoder, synthetic_texts(9, seed=2), pairs=True)
    assert feeds["token_type_ids"].any()  # the second segment's type embedding is read
    write_bert_onnx(tiny_cross_encoder, tmp_path / "c.onnx", head="first_logit")
    net = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder)).eval()
    with torch.inference_mode():
        reference = net(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits[:, 0].numpy()
    ours = _run(tmp_path / "c.onnx", feeds)
    assert ours.shape == reference.shape and np.abs(ours - reference).max() < 1e-5


def test_a_mean_pooled_cross_encoder_graph_matches_its_torch_scores(tiny_cross_encoder, tmp_path):
    """`souk_pooling: mean` in the config: the pooler reads the tokens' mean under the mask, in ONNX as in
    `cross_encoder.logits`, and the scores differ from the [CLS] head's on the same weights."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from souk.models.cross_encoder import logits, with_pooling

    model = tmp_path / "mean"
    shutil.copytree(tiny_cross_encoder, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config | {"souk_pooling": "mean"}))
    feeds = _batch(model, synthetic_texts(9, seed=2) + ["x"], pairs=True)  # padded rows: the mask matters
    write_bert_onnx(model, tmp_path / "c.onnx", head="first_logit")
    net = with_pooling(AutoModelForSequenceClassification.from_pretrained(str(model)).eval())
    assert net.config.souk_pooling == "mean"
    with torch.inference_mode():
        reference = logits(net, *(torch.from_numpy(feeds[k]) for k in ("input_ids", "token_type_ids",
                                                                        "attention_mask"))).numpy()
        cls = type(net).forward(net, **{k: torch.from_numpy(v) for k, v in feeds.items()}).logits[:, 0].numpy()
    ours = _run(tmp_path / "c.onnx", feeds)
    assert ours.shape == reference.shape and np.abs(ours - reference).max() < 1e-5
    assert np.abs(cls - reference).max() > 1e-3


def test_the_feed_forward_output_projections_keep_the_names_int8_exports_select(tiny_encoder, tmp_path):
    from souk.models.backends import fp32_matmuls

    write_bert_onnx(tiny_encoder, tmp_path / "m.onnx")
    layers = bert_config(tiny_encoder)["num_hidden_layers"]
    assert fp32_matmuls(tmp_path / "m.onnx") == [f"/encoder/layer.{i}/output/dense/MatMul" for i in range(layers)]


def _hostile(tiny_encoder, tmp_path, name):
    model = tmp_path / name
    shutil.copytree(tiny_encoder, model)
    return model


@pytest.mark.parametrize("damage, expected", [
    (lambda m: (m / "config.json").write_text("{not json"), "not JSON"),
    (lambda m: (m / "config.json").write_text(" " * 2_000_000 + "{}"), "larger than"),
    (lambda m: (m / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"})), "does not describe a BERT"),
    (lambda m: (m / "config.json").write_text(json.dumps(json.loads((m / "config.json").read_text())
                                                         | {"hidden_size": 10 ** 9})), "hidden_size"),
    (lambda m: (m / "config.json").write_text(json.dumps(json.loads((m / "config.json").read_text())
                                                         | {"hidden_act": "swish"})), "hidden_act"),
    (lambda m: (m / "model.safetensors").write_bytes((m / "model.safetensors").read_bytes()[:-100]), "cannot be read"),
    (lambda m: (m / "model.safetensors").rename(m / "pytorch_model.bin"), "no model.safetensors"),
    (lambda m: (m / "config.json").write_text(json.dumps(json.loads((m / "config.json").read_text())
                                                         | {"num_hidden_layers": 9})), "lacks encoder.layer."),
    (lambda m: (m / "config.json").write_text(json.dumps(json.loads((m / "config.json").read_text())
                                                         | {"intermediate_size": 7})), "has shape"),
    (lambda m: (m / "config.json").write_text(json.dumps(json.loads((m / "config.json").read_text())
                                                         | {"souk_pooling": "max"})), "souk_pooling"),
])
def test_files_it_cannot_read_raise_one_clear_error_without_a_path(tiny_encoder, tmp_path, damage, expected):
    model = _hostile(tiny_encoder, tmp_path, "hostile")
    damage(model)
    with pytest.raises(NotBert, match=expected) as e:
        write_bert_onnx(model, tmp_path / "m.onnx")
    assert str(tmp_path) not in str(e.value) and not (tmp_path / "m.onnx").exists()
    if expected in ("not JSON", "larger than", "does not describe a BERT", "hidden_size", "hidden_act",
                    "no model.safetensors"):
        assert not writable(model)


def test_a_query_process_with_an_empty_cache_encodes_on_onnx_without_importing_torch(tiny_encoder, tmp_path):
    """The cold start the module exists for: nothing measured, nothing exported, and no torch in the process."""
    script = (
        "import sys\n"
        "from souk.models import EncoderConfig, get_encoder\n"
        f"enc = get_encoder(EncoderConfig(model={str(tiny_encoder)!r}, backend='exact'))\n"
        "v = enc.encode(['vitamin d deficiency'])\n"
        "print(enc.backend, v.shape[0], 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {"SOUK_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["onnx-fp32", "1", "False", "False"]
