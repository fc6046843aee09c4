"""LightGBM text models read as untrusted input: checked in Python, rewritten, and only then loaded.

LightGBM's own loader aborts (cut to 10%: SIGABRT), segfaults (cut to 90%) or hangs (a root whose child is
itself); these tests damage a real trained model by truncation and bit flips and check that every damaged
text is refused with `ModelTextError` or loads into a booster that predicts, in a child process that must
exit cleanly within its timeout."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from souk.models.lightgbm_text import ModelTextError, Trees, canonical_text, load_booster, load_trees, parse_model

X = np.random.default_rng(1).normal(size=(64, 4))


@pytest.fixture(scope="module")
def model_text() -> str:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    data = rng.normal(size=(200, 4))
    booster = lgb.train({"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5, "num_threads": 1},
                        lgb.Dataset(data, rng.integers(0, 3, 200), group=[20] * 10), num_boost_round=3)
    return booster.model_to_string()


def _replace_line(text: str, tree: int, key: str, value: str) -> str:
    """The text with `key=` of tree `tree` set to `value`."""
    lines = text.split("\n")
    start = lines.index(f"Tree={tree}")
    for i in range(start, len(lines)):
        if lines[i].startswith(key + "="):
            lines[i] = f"{key}={value}"
            return "\n".join(lines)
    raise AssertionError(key)


def _line(text: str, tree: int, key: str) -> list[str]:
    lines = text.split("\n")
    start = lines.index(f"Tree={tree}")
    return next(x for x in lines[start:] if x.startswith(key + "=")).split("=", 1)[1].split(" ")


def test_a_checked_model_predicts_exactly_like_lightgbm_reading_the_file(model_text):
    import lightgbm as lgb

    original = lgb.Booster(model_str=model_text)
    checked = load_booster(model_text.encode())
    assert np.array_equal(original.predict(X), checked.predict(X))
    model = parse_model(model_text)
    assert (model.num_features, len(model.trees)) == (4, 3)
    assert parse_model(canonical_text(model)) == model  # the rewrite is a fixed point


@pytest.mark.parametrize("key,edit,message", [
    ("left_child", lambda v: ["0"] + v[1:], "reached twice"),  # the root points to itself: LightGBM loops forever
    ("right_child", lambda v: [v[0]] + ["0"] + v[2:], "reached twice"),
    ("left_child", lambda v: ["9999"] + v[1:], "is not a node"),
    ("left_child", lambda v: ["-9999"] + v[1:], "is not a leaf"),
    ("split_feature", lambda v: ["4"] + v[1:], "outside 0..3"),
    ("split_feature", lambda v: ["-1"] + v[1:], "outside 0..3"),
    ("decision_type", lambda v: ["1"] + v[1:], "not a numerical split"),
    ("leaf_value", lambda v: ["nan"] + v[1:], "not finite"),
    ("leaf_value", lambda v: v[:-1], "expected 31"),
    ("threshold", lambda v: v + ["1.0"], "expected 30"),
    ("num_leaves", lambda v: ["200000"], "num_leaves must be"),
    ("num_leaves", lambda v: ["40"], "expected 39"),
    ("num_cat", lambda v: ["1"], "categorical"),
    ("shrinkage", lambda v: ["1e999"], "finite"),
    ("leaf_count", lambda v: ["x"] + v[1:], "not an integer"),
])
def test_hostile_trees_are_refused_with_the_tree_and_key(model_text, key, edit, message):
    damaged = _replace_line(model_text, 1, key, " ".join(edit(_line(model_text, 1, key))))
    with pytest.raises(ModelTextError, match=message):
        load_booster(damaged.encode())


def test_two_children_sharing_a_leaf_and_an_unreached_node_are_refused(model_text):
    left = _line(model_text, 0, "left_child")
    right = _line(model_text, 0, "right_child")
    leaf = next(x for x in right if x.startswith("-"))
    shared = _replace_line(model_text, 0, "left_child", " ".join([leaf if x.startswith("-") else x for x in left]))
    with pytest.raises(ModelTextError, match="reached twice"):
        parse_model(shared)
    assert left != right


@pytest.mark.parametrize("old,new,message", [
    ("objective=lambdarank", "objective=custom", "objective"),
    ("num_class=1", "num_class=3", "num_class"),
    ("max_feature_idx=3", "max_feature_idx=7", "feature_names must be 8"),
    ("version=v4", "version=v9", "version"),
    ("end of trees", "end of tree", "expected Tree=3"),
    ("Tree=1", "Tree=5", "expected Tree=1"),
])
def test_hostile_headers_are_refused(model_text, old, new, message):
    with pytest.raises(ModelTextError, match=message):
        load_booster(model_text.replace(old, new, 1).encode())


def test_tree_sizes_that_lie_do_not_reach_lightgbm(model_text):
    sizes = next(x for x in model_text.split("\n") if x.startswith("tree_sizes="))
    lying = model_text.replace(sizes, "tree_sizes=10 999999 3")
    assert np.array_equal(load_booster(lying.encode()).predict(X), load_booster(model_text.encode()).predict(X))
    with pytest.raises(ModelTextError, match="tree_sizes lists 2 trees"):
        load_booster(model_text.replace(sizes, "tree_sizes=10 20").encode())


def test_binary_and_non_utf8_bytes_are_refused(model_text):
    with pytest.raises(ModelTextError, match="not UTF-8"):
        load_booster(b"tree\n\xff\xfe")
    with pytest.raises(ModelTextError, match="NUL"):
        load_booster(model_text.replace("Tree=1", "Tree=\x001").encode())
    with pytest.raises(ModelTextError, match="starts with `tree`"):
        load_booster(b"")


def _outcome(text: str) -> str:
    """'ok' when the text parses into a model whose every tree is a proper tree, else 'refused'."""
    try:
        model = parse_model(text)
    except ModelTextError:
        return "refused"
    for t in model.trees:
        if t.num_leaves > 1:
            assert all(0 <= f < model.num_features for f in t.arrays["split_feature"])
            assert len(t.arrays["left_child"]) == t.num_leaves - 1
    return "ok"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1))
def test_property_any_truncation_is_refused_or_a_proper_model(model_text, cut):
    _outcome(model_text[: int(len(model_text) * cut)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=4))
def test_property_any_bit_flips_are_refused_or_a_proper_model(model_text, flips):
    data = bytearray(model_text.encode())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(ModelTextError):
            load_booster(bytes(data))
        return
    _outcome(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.integers(0, 2), key=st.sampled_from(["left_child", "right_child", "split_feature", "decision_type"]),
       pos=st.integers(0, 29), value=st.integers(-40, 40))
def test_property_any_single_index_edit_is_refused_or_predicts(model_text, tree, key, pos, value):
    values = _line(model_text, tree, key)
    values[pos] = str(value)
    text = _replace_line(model_text, tree, key, " ".join(values))
    if _outcome(text) == "ok":  # a proper tree: LightGBM predicts in finite time, and numpy exactly alike
        expected = load_booster(text.encode()).predict(X[:4])
        assert np.isfinite(expected).all()
        np.testing.assert_allclose(load_trees(text.encode()).predict(X[:4]), expected, rtol=1e-12, atol=1e-12)


def _missing_data(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Features with NaNs, exact zeros, values within LightGBM's zero threshold and a constant column."""
    data = rng.normal(size=(rows, 5))
    data[rng.random(data.shape) < 0.15] = np.nan
    data[rng.random(data.shape) < 0.15] = 0.0
    data[rng.random(data.shape) < 0.05] = 1e-36
    data[:, 4] = 1.0
    return data


@pytest.mark.parametrize("params", [
    {"objective": "lambdarank"},
    {"objective": "lambdarank", "zero_as_missing": True},  # missing type Zero
    {"objective": "regression", "use_missing": False},      # missing type None: NaN compares as 0
    {"objective": "regression", "num_leaves": 63, "min_data_in_leaf": 2, "max_depth": 12},
    {"objective": "huber", "min_data_in_leaf": 300},      # trees of one leaf (a constant)
])
def test_numpy_trees_predict_exactly_what_lightgbm_predicts(params):
    """`Trees` (what searches use) against LightGBM itself on the same checked text, over rows that hit every
    missing-value rule: NaN, zero, below the zero threshold, and values equal to thresholds."""
    import lightgbm as lgb

    rng = np.random.default_rng(7)
    train = _missing_data(rng, 400)
    booster = lgb.train({"verbosity": -1, "num_threads": 1, "min_data_in_leaf": 5, **params},
                        lgb.Dataset(train, rng.integers(0, 4, 400).astype(float), group=[20] * 20
                                    if params["objective"] == "lambdarank" else None), num_boost_round=20)
    text = booster.model_to_string()
    rows = _missing_data(rng, 300)
    model = parse_model(text)
    thresholds = [v for t in model.trees if t.num_leaves > 1 for v in t.arrays["threshold"]]
    if thresholds:
        rows[:50, 0] = np.resize(thresholds, 50)  # a value equal to a split's threshold goes left
    trees = load_trees(text.encode())
    assert (trees.num_feature(), trees.num_trees()) == (5, booster.num_trees())
    np.testing.assert_allclose(trees.predict(rows), booster.predict(rows), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(trees.predict(rows.astype(np.float32)), booster.predict(rows.astype(np.float32)),
                               rtol=1e-12, atol=1e-12)
    assert trees.predict(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="5 features"):
        trees.predict(rows[:, :4])


def test_a_search_process_scores_with_numpy_trees_and_never_imports_lightgbm(model_text):
    code = ("import sys, numpy as np\nfrom souk.models.lightgbm_text import load_trees\n"
            "t = load_trees(sys.stdin.buffer.read())\nprint(t.predict(np.ones((3, 4))).shape)\n"
            "assert 'lightgbm' not in sys.modules and 'sklearn' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], input=model_text.encode(), capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == b"(3,)", out.stderr.decode()[-2000:]
    assert isinstance(load_trees(model_text.encode()), Trees)


SWEEP = textwrap.dedent("""
    import random, sys
    import numpy as np
    from souk.models.lightgbm_text import ModelTextError, load_booster
    data = sys.stdin.buffer.read()
    rng = random.Random(0)
    cases = [data[: len(data) * f // 1000] for f in range(0, 1000, 4)] + [data[: len(data) - k] for k in range(1, 80)]
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        cases.append(bytes(b))
    X = np.random.default_rng(0).normal(size=(8, 4))
    ok = refused = 0
    for c in cases:
        try:
            load_booster(c).predict(X)
            ok += 1
        except ModelTextError:
            refused += 1
    print(len(cases), ok, refused)
""")


@pytest.mark.slow
def test_truncations_and_bit_flips_never_kill_or_hang_the_process(model_text):
    """629 damaged copies loaded and predicted in one child process: it must exit 0 within the timeout (LightGBM
    reading the same bytes directly dies with SIGABRT or SIGSEGV on some of them)."""
    out = subprocess.run([sys.executable, "-c", SWEEP], input=model_text.encode(), capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    total, ok, refused = map(int, out.stdout.split())
    assert total == ok + refused == 629 and refused > 200 and ok > 50
