import numpy as np
import pytest

from souk.errors import ConfigError
from souk.types import Ranking
from souk.retrieval.fusion import FUSIONS, NORMS, fuse


def R(*pairs) -> Ranking:
    return Ranking([p[0] for p in pairs], np.array([p[1] for p in pairs], dtype=np.float32))


A = R(("a", 9.0), ("b", 7.0), ("c", 1.0))
B = R(("c", 0.9), ("d", 0.8), ("a", 0.1))


def reference_rrf(rankings, weights, rrf_k):
    scores: dict[str, float] = {}
    for w, r in zip(weights, rankings):
        for rank, doc in enumerate(r.ids, start=1):
            scores[doc] = scores.get(doc, 0.0) + w / (rrf_k + rank)
    return scores


def test_rrf_matches_the_formula():
    out = fuse([A, B], "rrf", [1.0, 2.0], rrf_k=60)
    ref = reference_rrf([A, B], [1.0, 2.0], 60)
    assert out.ids == sorted(ref, key=lambda d: -ref[d])
    assert np.allclose(out.scores, [ref[d] for d in out.ids])


def test_rrf_matches_reference_on_random_rankings():
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(50)]
    lists = [R(*((d, 0.0) for d in rng.permutation(docs)[:30])) for _ in range(3)]
    out = fuse(lists, "rrf", [1.0, 0.5, 2.0], rrf_k=10)
    ref = reference_rrf(lists, [1.0, 0.5, 2.0], 10)
    assert set(out.ids) == set(ref)
    assert np.allclose(out.scores, [ref[d] for d in out.ids], atol=1e-6)
    assert np.all(np.diff(out.scores) <= 1e-7)


def test_weighted_minmax_by_hand():
    # A normalized: a=1, b=0.75, c=0; B normalized: c=1, d=0.875, a=0; missing docs get the floor 0
    out = fuse([A, B], "weighted", [1.0, 1.0], norm="minmax")
    expected = {"a": 1.0, "b": 0.75, "c": 1.0, "d": 0.875}
    assert dict(zip(out.ids, np.round(out.scores, 4))) == pytest.approx(expected)
    assert out.ids[:2] == ["a", "c"]  # a tie (1.0 each, both ranked first somewhere) keeps id order


def test_weighted_zscore_missing_doc_gets_the_lists_lowest_score():
    out = fuse([A, B], "weighted", [1.0, 0.0], norm="zscore")
    scores = dict(zip(out.ids, out.scores))
    z = (A.scores - A.scores.mean()) / A.scores.std()
    assert scores["a"] == pytest.approx(z[0]) and scores["d"] == pytest.approx(z.min())


def test_weights_and_k():
    assert fuse([A, B], "rrf", [1.0, 0.0]).ids[:3] == A.ids
    assert len(fuse([A, B], "weighted", k=2)) == 2
    assert fuse([Ranking.empty(), B], "weighted").ids[0] == "c"
    assert len(fuse([Ranking.empty(), Ranking.empty()], "rrf")) == 0


def test_errors_name_what_is_known():
    with pytest.raises(ConfigError, match="rrf"):
        fuse([A], "borda")
    with pytest.raises(ConfigError, match="zscore"):
        fuse([A], "weighted", norm="rank")
    with pytest.raises(ValueError, match="one weight per ranking"):
        fuse([A, B], "rrf", [1.0])
    assert set(FUSIONS) == {"rrf", "weighted"} and set(NORMS) == {"minmax", "zscore"}
