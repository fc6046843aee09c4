"""The cross-encoder seam: a sequence-classification directory loaded by path scores pairs."""
import numpy as np
import pytest

from souk.errors import ModelError
from souk.models import PairScorer, load_cross_encoder
from model_fakes import synthetic_texts

PAIRS = list(zip(synthetic_texts(12, seed=6, lo=1, hi=4), synthetic_texts(12, seed=7, lo=5, hi=40)))


@pytest.fixture(scope="module")
def scorer(tiny_cross_encoder):
    return load_cross_encoder(tiny_cross_encoder)


def test_scores_match_the_model_run_directly(scorer, tiny_cross_encoder):
    import torch
    from transformers import AutoModelForSequenceClassification, BertTokenizerFast

    assert isinstance(scorer, PairScorer)
    scores = scorer.score(PAIRS)
    assert scores.shape == (len(PAIRS),) and scores.dtype == np.float32
    tok = BertTokenizerFast.from_pretrained(str(tiny_cross_encoder))
    net = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder)).eval()
    with torch.inference_mode():
        ref = [net(**tok(q, d, return_tensors="pt", truncation=True, max_length=256)).logits[0, 0].item()
               for q, d in PAIRS]
    assert np.allclose(scores, ref, atol=1e-5)


def test_order_and_batching_do_not_change_a_pair_score(scorer, tiny_cross_encoder):
    scores = scorer.score(PAIRS)
    order = np.random.default_rng(0).permutation(len(PAIRS))
    assert np.allclose(scorer.score([PAIRS[i] for i in order]), scores[order], atol=1e-5)
    assert np.allclose(load_cross_encoder(tiny_cross_encoder, batch_size=1).score(PAIRS), scores, atol=1e-5)
    assert scorer.score([]).shape == (0,)


def test_a_bi_encoder_is_not_a_cross_encoder(tiny_encoder):
    with pytest.raises(ModelError, match="not a cross-encoder"):
        load_cross_encoder(tiny_encoder)
