import time

import numpy as np
import pytest

from souk.models import encode_resumable, load_encoder
from model_fakes import synthetic_texts


def test_resume_reuses_finished_chunks(tmp_path, tiny_encoder):
    enc = load_encoder(tiny_encoder, backend="torch-fp32")
    texts = synthetic_texts(24)
    first = encode_resumable(enc, texts[:16], tmp_path, chunk=8, progress=False)  # "interrupted" after 2 chunks
    done = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    assert len(done) == 2
    time.sleep(0.01)
    full = encode_resumable(enc, texts, tmp_path, chunk=8, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # not recomputed
    assert np.array_equal(full[:16], first)
    assert np.allclose(full[16:], enc.encode(texts[16:]), atol=1e-6)


def test_a_damaged_chunk_is_recomputed(tmp_path, tiny_encoder):
    enc = load_encoder(tiny_encoder, backend="torch-fp32")
    texts = synthetic_texts(8)
    good = encode_resumable(enc, texts, tmp_path, chunk=8, progress=False)
    next(tmp_path.glob("*.npy")).write_bytes(b"not numpy")
    assert np.array_equal(encode_resumable(enc, texts, tmp_path, chunk=8, progress=False), good)


class Constant:
    """Any object with `encode` is an Encoder."""

    def encode(self, texts):
        return np.ones((len(texts), 3), np.float32)


def test_any_encoder_works_given_a_folder(tmp_path):
    assert encode_resumable(Constant(), ["a", "b", "c"], tmp_path, chunk=2, progress=False).shape == (3, 3)
    assert encode_resumable(Constant(), [], tmp_path, progress=False).shape == (0, 3)
    with pytest.raises(ValueError, match="checkpoints"):
        encode_resumable(Constant(), ["a"], progress=False)
