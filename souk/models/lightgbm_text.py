"""LightGBM text models (`model.txt`) read as untrusted input: parsed and checked in Python, then handed to
LightGBM as a canonical text this module wrote itself.

LightGBM's own loader trusts the file: a model cut short aborts the process (an exception thrown inside an
OpenMP loop), a wrong `tree_sizes` reads past the buffer (segfault), and a tree whose child points back to
its root makes every prediction loop forever. `parse_model` checks everything the loader and the predictor
rely on: the header (one class, a known ranking or regression objective, feature names and infos for
`max_feature_idx + 1` features), and per tree: `num_leaves` within LightGBM's limit, numerical splits only
(no categorical, no linear trees), every array of exactly the length its count implies, split features in
range, finite numbers where the predictor adds them up, valid decision types, and children forming one
proper binary tree from the root (every internal node and every leaf reached exactly once: no cycle, no
shared or dangling node). `canonical_text` writes the checked model back with `tree_sizes` computed here,
so the bytes LightGBM parses are ones souk produced. Misuse: `lightgbm.Booster(model_file=...)` on a file
from an index directory; load `canonical_text(parse_model(text))` with `model_str=`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from souk.errors import ModelError

MAX_BYTES = 512 << 20  # a model file larger than this is refused unread
MAX_LEAVES = 131072  # LightGBM's own limit on num_leaves
MAX_TREES = 1_000_000
MAX_FEATURES = 1_000_000
OBJECTIVES = ("lambdarank", "rank_xendcg", "regression", "regression_l2", "regression_l1", "huber", "fair")
_INT = re.compile(r"^[+-]?\d{1,19}$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,4})?$|^[+-]?inf$|^nan$", re.IGNORECASE)
_NAME = re.compile(r"^[^\s=]{1,256}$")
_INFO = re.compile(r"^(none|\[[^\s:\]]+:[^\s:\]]+\])$")
_DECISION_TYPES = {0, 2, 4, 6, 8, 10}  # numerical split: default-left bit (2) and missing type 0/1/2 (<< 2)
_HEADER = ("version", "num_class", "num_tree_per_iteration", "label_index", "max_feature_idx", "objective",
           "feature_names", "feature_infos", "tree_sizes")
_SPLIT_ARRAYS = ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child",
                 "internal_value", "internal_weight", "internal_count")
_LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")
_INT_ARRAYS = {"split_feature", "decision_type", "left_child", "right_child", "leaf_count", "internal_count"}
_FINITE = {"leaf_value", "leaf_weight", "internal_value", "internal_weight", "split_gain"}


class ModelTextError(ModelError):
    """`model.txt` is not a LightGBM model souk can load safely; the message says where (line, tree, key)."""


@dataclass
class Tree:
    num_leaves: int
    arrays: dict[str, list] = field(default_factory=dict)  # key -> ints or floats
    shrinkage: float = 1.0


@dataclass
class LightGBMText:
    """A checked model: header values, features and trees."""

    objective: str
    max_feature_idx: int
    feature_names: list[str]
    feature_infos: list[str]
    trees: list[Tree]

    @property
    def num_features(self) -> int:
        return self.max_feature_idx + 1


def parse_model(text: str) -> LightGBMText:
    """Check a LightGBM text model (see the module doc); `ModelTextError` names the first problem."""
    if len(text) > MAX_BYTES:
        raise ModelTextError(f"the model text is over {MAX_BYTES >> 20} MB")
    if "\x00" in text:
        raise ModelTextError("the model text holds a NUL byte")
    lines = text.split("\n")
    if not lines or lines[0].strip() != "tree":
        raise ModelTextError("line 1: a LightGBM text model starts with `tree`")
    header: dict[str, str] = {}
    i = 1
    while i < len(lines) and not lines[i].startswith("Tree="):
        line = lines[i].strip()
        i += 1
        if line == "end of trees":
            break
        if not line or "=" not in line:
            continue  # e.g. average_output, blank lines
        key, value = line.split("=", 1)
        if key in header:
            raise ModelTextError(f"line {i}: {key} given twice")
        header[key] = value
    missing = [k for k in _HEADER if k not in header]
    if missing:
        raise ModelTextError(f"the header lacks {missing[0]}= (the model is cut short or not a LightGBM model)")
    if header["version"] not in ("v3", "v4"):
        raise ModelTextError(f"version {header['version'][:20]!r} is not v3 or v4")
    for key in ("num_class", "num_tree_per_iteration"):
        if _int(header[key], key) != 1:
            raise ModelTextError(f"{key} must be 1 for a ranking model")
    if _int(header["label_index"], "label_index") != 0:
        raise ModelTextError("label_index must be 0")
    max_feature_idx = _int(header["max_feature_idx"], "max_feature_idx")
    if not 0 <= max_feature_idx < MAX_FEATURES:
        raise ModelTextError(f"max_feature_idx must be in 0..{MAX_FEATURES - 1}")
    objective = header["objective"].strip()
    if objective not in OBJECTIVES:
        raise ModelTextError(f"objective {objective[:40]!r} is not one of {', '.join(OBJECTIVES)}")
    names = header["feature_names"].split(" ")
    infos = header["feature_infos"].split(" ")
    if len(names) != max_feature_idx + 1 or not all(_NAME.match(n) for n in names):
        raise ModelTextError(f"feature_names must be {max_feature_idx + 1} names without spaces")
    if len(infos) != max_feature_idx + 1 or not all(_INFO.match(x) for x in infos):
        raise ModelTextError(f"feature_infos must be {max_feature_idx + 1} numerical ranges [lo:hi] or none")
    sizes = header["tree_sizes"].split(" ") if header["tree_sizes"] else []
    if len(sizes) > MAX_TREES:
        raise ModelTextError(f"more than {MAX_TREES} trees")
    trees: list[Tree] = []
    while i < len(lines):
        line = lines[i].strip()
        if line == "end of trees":
            break
        if not line:
            i += 1
            continue
        if line != f"Tree={len(trees)}":
            raise ModelTextError(f"line {i + 1}: expected Tree={len(trees)} or `end of trees`")
        tree, i = _parse_tree(lines, i + 1, len(trees), max_feature_idx)
        trees.append(tree)
        if len(trees) > MAX_TREES:
            raise ModelTextError(f"more than {MAX_TREES} trees")
    else:
        raise ModelTextError("no `end of trees` line: the model is cut short")
    if len(sizes) != len(trees):
        raise ModelTextError(f"tree_sizes lists {len(sizes)} trees, the file holds {len(trees)}")
    for n, s in enumerate(sizes):
        _int(s, f"tree_sizes[{n}]")
    if not trees:
        raise ModelTextError("the model holds no trees")
    return LightGBMText(objective, max_feature_idx, names, infos, trees)


def _parse_tree(lines: list[str], i: int, n: int, max_feature_idx: int) -> tuple[Tree, int]:
    """The key=value block of tree `n` starting at line index `i`; returns it and the index after it."""
    where = f"tree {n}"
    values: dict[str, str] = {}
    while i < len(lines) and lines[i].strip():
        line = lines[i].strip()
        if "=" not in line:
            raise ModelTextError(f"line {i + 1} ({where}): expected key=value")
        key, value = line.split("=", 1)
        if key in values:
            raise ModelTextError(f"line {i + 1} ({where}): {key} given twice")
        values[key] = value
        i += 1
    for key in ("num_leaves", "num_cat", "leaf_value", "shrinkage"):
        if key not in values:
            raise ModelTextError(f"{where}: no {key}= (the model is cut short)")
    leaves = _int(values["num_leaves"], f"{where}: num_leaves")
    if not 1 <= leaves <= MAX_LEAVES:
        raise ModelTextError(f"{where}: num_leaves must be in 1..{MAX_LEAVES}")
    if _int(values["num_cat"], f"{where}: num_cat") != 0:
        raise ModelTextError(f"{where}: categorical splits are not supported (num_cat must be 0)")
    if values.get("is_linear", "0") != "0":
        raise ModelTextError(f"{where}: linear trees are not supported")
    shrinkage = _float(values["shrinkage"], f"{where}: shrinkage")
    if not math.isfinite(shrinkage):
        raise ModelTextError(f"{where}: shrinkage must be finite")
    tree = Tree(leaves, shrinkage=shrinkage)
    if leaves == 1:
        tree.arrays["leaf_value"] = _array(values["leaf_value"], "leaf_value", 1, where)
        return tree, i
    for key in _SPLIT_ARRAYS + _LEAF_ARRAYS:
        if key not in values:
            raise ModelTextError(f"{where}: no {key}= (the model is cut short)")
        tree.arrays[key] = _array(values[key], key, leaves - 1 if key in _SPLIT_ARRAYS else leaves, where)
    a = tree.arrays
    for j, f in enumerate(a["split_feature"]):
        if not 0 <= f <= max_feature_idx:
            raise ModelTextError(f"{where}: split_feature[{j}] = {f} is outside 0..{max_feature_idx}")
    for j, d in enumerate(a["decision_type"]):
        if d not in _DECISION_TYPES:
            raise ModelTextError(f"{where}: decision_type[{j}] = {d} is not a numerical split")
    for j, t in enumerate(a["threshold"]):
        if math.isnan(t):
            raise ModelTextError(f"{where}: threshold[{j}] is NaN")
    for key in ("leaf_count", "internal_count"):
        if any(c < 0 for c in a[key]):
            raise ModelTextError(f"{where}: {key} holds a negative count")
    _check_structure(a["left_child"], a["right_child"], leaves, where)
    return tree, i


def _check_structure(left: list[int], right: list[int], leaves: int, where: str) -> None:
    """Children from node 0 reach every internal node and every leaf exactly once (a proper binary tree)."""
    inner_seen = [False] * (leaves - 1)
    leaf_seen = [False] * leaves
    inner_seen[0] = True
    stack = [0]
    while stack:
        node = stack.pop()
        for side, child in (("left_child", left[node]), ("right_child", right[node])):
            if child >= 0:
                if child >= leaves - 1:
                    raise ModelTextError(f"{where}: {side}[{node}] = {child} is not a node (0..{leaves - 2})")
                if inner_seen[child]:
                    raise ModelTextError(f"{where}: node {child} is reached twice (a cycle or a shared node)")
                inner_seen[child] = True
                stack.append(child)
            else:
                leaf = ~child
                if leaf >= leaves:
                    raise ModelTextError(f"{where}: {side}[{node}] = {child} is not a leaf (-1..-{leaves})")
                if leaf_seen[leaf]:
                    raise ModelTextError(f"{where}: leaf {leaf} is reached twice")
                leaf_seen[leaf] = True
    if not all(inner_seen) or not all(leaf_seen):
        raise ModelTextError(f"{where}: some nodes or leaves are not reachable from the root")


def _int(value: str, where: str) -> int:
    value = value.strip()
    if not _INT.match(value):
        raise ModelTextError(f"{where}: {value[:30]!r} is not an integer")
    out = int(value)
    if not -(2 ** 31) <= out < 2 ** 31:
        raise ModelTextError(f"{where}: {out} is out of range")
    return out


def _float(value: str, where: str) -> float:
    value = value.strip()
    if not _FLOAT.match(value):
        raise ModelTextError(f"{where}: {value[:30]!r} is not a number")
    return float(value)


def _array(value: str, key: str, length: int, where: str) -> list:
    parts = value.split(" ") if value.strip() else []
    if len(parts) != length:
        raise ModelTextError(f"{where}: {key} has {len(parts)} values, expected {length}")
    if key in _INT_ARRAYS:
        return [_int(p, f"{where}: {key}") for p in parts]
    out = [_float(p, f"{where}: {key}") for p in parts]
    if key in _FINITE and not all(math.isfinite(x) for x in out):
        raise ModelTextError(f"{where}: {key} holds a value that is not finite")
    return out


def _fmt(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


def _tree_text(n: int, tree: Tree) -> str:
    a = tree.arrays
    lines = [f"Tree={n}", f"num_leaves={tree.num_leaves}", "num_cat=0"]
    if tree.num_leaves == 1:
        lines += ["split_feature=", "split_gain=", "threshold=", "decision_type=", "left_child=", "right_child=",
                  f"leaf_value={_fmt(a['leaf_value'][0])}", "leaf_weight=", "leaf_count=", "internal_value=",
                  "internal_weight=", "internal_count="]
    else:
        for key in ("split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child",
                    "leaf_value", "leaf_weight", "leaf_count", "internal_value", "internal_weight", "internal_count"):
            lines.append(f"{key}={' '.join(_fmt(v) for v in a[key])}")
    lines += ["is_linear=0", f"shrinkage={_fmt(tree.shrinkage)}"]
    return "\n".join(lines) + "\n\n\n"


def canonical_text(model: LightGBMText) -> str:
    """The checked model as LightGBM text written here (tree_sizes computed from the blocks themselves)."""
    blocks = [_tree_text(n, t) for n, t in enumerate(model.trees)]
    header = ["tree", "version=v4", "num_class=1", "num_tree_per_iteration=1", "label_index=0",
              f"max_feature_idx={model.max_feature_idx}", f"objective={model.objective}",
              f"feature_names={' '.join(model.feature_names)}", f"feature_infos={' '.join(model.feature_infos)}",
              f"tree_sizes={' '.join(str(len(b.encode('utf-8'))) for b in blocks)}"]
    return "\n".join(header) + "\n\n" + "".join(blocks) + "end of trees\n\npandas_categorical:null\n"


ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: |x| at most this counts as zero


class Trees:
    """A checked model's trees as flat arrays, predicted with numpy exactly as LightGBM's numerical decisions
    (`Tree::NumericalDecision`: NaN becomes 0 unless the split's missing type is NaN; a missing value (zero for
    missing type Zero, NaN for NaN) goes the split's default way; else `x <= threshold` goes left; values within
    `ZERO` of 0 are 0, as LightGBM's dense rows drop them). A search process so imports no LightGBM (1.3 s with
    the scikit-learn it imports) and runs no C loader over a file from an index directory.
    Every (row, tree) pair takes one step of depth per numpy pass; leaves are nodes that lead to themselves, and
    the pairs that reached one are dropped every `COMPACT` passes. HomeDepot's fitted ranker (177 trees, depth
    16) over 150 rows: 1.15 ms against LightGBM's 0.45 (one thread); LightGBM's import costs 1.3 s a process.
    Misuse: building it from text `parse_model`
    did not check (only there do the children form proper trees)."""

    COMPACT = 4  # passes between drops of finished pairs (1: 1.66 ms, 2: 1.27, 3: 1.17, 4: 1.15 on the above)

    def __init__(self, model: LightGBMText):
        inner = sum(t.num_leaves - 1 for t in model.trees if t.num_leaves > 1)
        feature: list[int] = []
        threshold: list[float] = []
        decision: list[int] = []
        left: list[int] = []
        right: list[int] = []
        leaf_value: list[float] = []
        roots: list[int] = []
        self.constant, self.depth = 0.0, 0  # trees of one leaf; the deepest leaf
        at = leaves = 0
        for tree in model.trees:
            a = tree.arrays
            if tree.num_leaves == 1:
                self.constant += float(a["leaf_value"][0])
                continue
            roots.append(at)
            feature += a["split_feature"]
            threshold += a["threshold"]
            decision += a["decision_type"]
            for side, children in ((left, a["left_child"]), (right, a["right_child"])):
                side += [at + c if c >= 0 else inner + leaves + ~c for c in children]
            leaf_value += a["leaf_value"]
            self.depth = max(self.depth, _depth(a["left_child"], a["right_child"]))
            at += tree.num_leaves - 1
            leaves += tree.num_leaves
        self.inner = inner
        # leaves follow the inner nodes: feature 0, threshold +inf, both children themselves
        self.feature = np.asarray(feature + [0] * leaves, dtype=np.int32)
        self.threshold = np.asarray(threshold + [math.inf] * leaves, dtype=np.float64)
        decision_type = np.asarray(decision + [0] * leaves, dtype=np.int64)
        self.default_left = (decision_type & 2) != 0
        self.missing = (decision_type >> 2) & 3  # 0 none, 1 zero, 2 NaN
        own = list(range(inner, inner + leaves))
        self.children = np.stack([np.asarray(right + own, dtype=np.int32), np.asarray(left + own, dtype=np.int32)],
                                 axis=1).ravel()  # [2 * node + went left]
        self.leaf_value = np.asarray(leaf_value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int32)
        self.zero_missing = bool((self.missing == 1).any())
        self._features = model.num_features
        self._trees = len(model.trees)

    def num_feature(self) -> int:
        return self._features

    def num_trees(self) -> int:
        return self._trees

    def predict(self, X: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """One score per row of `X` (rows x `num_feature()`), as `lightgbm.Booster.predict` gives (raw score:
        souk's objectives have no output transform). `num_threads` is accepted for the Booster's signature."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._features:
            raise ValueError(f"expected rows of {self._features} features, got shape {X.shape}")
        n, t, f = len(X), len(self.roots), X.shape[1]
        out = np.full(n, self.constant)
        if not n or not t:
            return out
        flat = np.where(np.abs(X) <= ZERO, 0.0, X).ravel()
        general = self.zero_missing or bool(np.isnan(flat).any())  # else a plain comparison decides every split
        if n * max(t, f) >= 2**31:
            raise ValueError(f"{n} rows of {f} features over {t} trees: score them in smaller batches")
        base = np.repeat(np.arange(n, dtype=np.int32) * np.int32(f), t)  # each pair's row offset in `flat`
        node = np.tile(self.roots, n)
        for step in range(1, self.depth + 1):
            x = np.take(flat, base + np.take(self.feature, node))
            if general:
                missing = np.take(self.missing, node)
                nan = np.isnan(x)
                x = np.where(nan & (missing != 2), 0.0, x)
                default = ((missing == 1) & (x == 0.0)) | ((missing == 2) & nan)
                went_left = np.where(default, np.take(self.default_left, node), x <= np.take(self.threshold, node))
            else:
                went_left = x <= np.take(self.threshold, node)
            node = np.take(self.children, node * 2 + went_left)
            if step % self.COMPACT == 0 or step == self.depth:
                done = node >= self.inner
                if done.any():
                    out += np.bincount(base[done] // f, weights=np.take(self.leaf_value, node[done] - self.inner),
                                       minlength=n)
                    node, base = node[~done], base[~done]
                    if not len(node):
                        break
        return out


def _depth(left: list, right: list) -> int:
    """The number of splits on the longest path from the root (node 0) to a leaf (negative child)."""
    deepest, stack = 0, [(0, 1)]
    while stack:
        node, depth = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                stack.append((child, depth + 1))
            else:
                deepest = max(deepest, depth)
    return deepest


def _checked(data: bytes, where: str) -> LightGBMText:
    if len(data) > MAX_BYTES:
        raise ModelTextError(f"{where} is over {MAX_BYTES >> 20} MB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelTextError(f"{where}: not UTF-8 text (byte {e.start})") from None
    return parse_model(text)


def load_trees(data: bytes, where: str = "model.txt") -> Trees:
    """The trees of untrusted bytes, decoded and checked, for prediction without LightGBM (what searches use)."""
    return Trees(_checked(data, where))


def load_booster(data: bytes, where: str = "model.txt"):
    """A `lightgbm.Booster` from untrusted bytes: decoded, checked, rewritten, then loaded (for training code,
    which imports LightGBM anyway; searches use `load_trees`)."""
    import lightgbm as lgb

    model = _checked(data, where)
    try:
        booster = lgb.Booster(model_str=canonical_text(model))
    except lgb.basic.LightGBMError as e:
        raise ModelTextError(f"{where}: LightGBM refused the checked model ({str(e)[:200]})") from None
    if booster.num_feature() != model.num_features or booster.num_trees() != len(model.trees):
        raise ModelTextError(f"{where}: LightGBM read {booster.num_trees()} trees over {booster.num_feature()} "
                             f"features, the text holds {len(model.trees)} over {model.num_features}")
    return booster
