"""The bi-encoder seam: the protocol, and the transformer encoder loaded by name or by path."""
import numpy as np
import pytest

from souk.errors import ModelError
from souk.models import Encoder, EncoderConfig, TransformerEncoder, get_encoder, load_encoder
from model_fakes import synthetic_texts


@pytest.fixture(scope="module")
def encoder(tiny_encoder):
    return load_encoder(tiny_encoder, backend="torch-fp32")


def test_loaded_by_path_and_meeting_the_protocol(encoder, tiny_encoder):
    assert isinstance(encoder, Encoder) and encoder.dim == 32
    assert load_encoder(str(tiny_encoder), backend="torch-fp32").card == encoder.card
    vecs = encoder.encode(["solar panels", "手机壳"])
    assert vecs.shape == (2, 32) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_length_sorted_batches_keep_input_order(encoder):
    texts = synthetic_texts(40, seed=2, lo=1, hi=60)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    assert np.allclose(encoder.encode(texts), one_by_one, atol=1e-5)
    assert encoder.encode([]).shape == (0, 32)


def test_truncation_and_normalization_change_the_vectors(tiny_encoder, encoder):
    text = " ".join(synthetic_texts(1, seed=4, lo=60, hi=60))
    short = load_encoder(tiny_encoder, backend="torch-fp32", max_length=8).encode([text])
    raw = load_encoder(tiny_encoder, backend="torch-fp32", normalize=False).encode([text])
    assert not np.allclose(short, encoder.encode([text]), atol=1e-3)
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3 and np.allclose(raw / np.linalg.norm(raw), encoder.encode([text]),
                                                                 atol=1e-5)


def test_unknown_backends_and_cross_encoders_are_refused(tiny_encoder, tiny_cross_encoder):
    with pytest.raises(ModelError, match="onnx-int8"):
        TransformerEncoder(EncoderConfig(model=str(tiny_encoder), backend="tpu"))
    with pytest.raises(ModelError, match="not a bi-encoder"):
        get_encoder(EncoderConfig(model=str(tiny_cross_encoder), backend="torch-fp32"))


def test_exported_names_are_what_was_meant():
    import inspect

    import souk.models

    assert set(souk.models.__all__) == {
        "BACKENDS", "MODEL_MANIFEST", "CrossEncoder", "Encoder", "EncoderConfig", "ModelCard",
        "TransformerEncoder", "choose_backend", "detect_machine", "encode_resumable", "get_encoder",
        "load_encoder", "model_card", "model_names", "register_model", "text_coverage", "write_model_manifest"}
    namespace: dict = {}
    exec("from souk.models import *", namespace)  # an exported name the package lacks fails here
    assert set(namespace) - {"__builtins__"} == set(souk.models.__all__)
    undocumented = [n for n, obj in namespace.items() if (inspect.isclass(obj) or inspect.isfunction(obj))
                    and not (obj.__doc__ or "").strip()]
    assert undocumented == [] and namespace["MODEL_MANIFEST"] == "manifest.json"
