import numpy as np

from souk.types import Ranking


def test_pairs_give_the_float64_values_of_the_scores_whatever_their_dtype():
    scores32 = np.asarray([1 / 3, 2.5e-7, 7.0], dtype=np.float32)
    pairs = Ranking(["a", "b", "c"], scores32).pairs()
    assert pairs == list(zip("abc", scores32.astype(np.float64).tolist()))
    assert all(type(s) is float for _, s in pairs)
    assert Ranking(["a", "b"], np.asarray([2, 1])).pairs() == [("a", 2.0), ("b", 1.0)]
    assert all(type(s) is float for _, s in Ranking(["a"], np.asarray([2])).pairs())
