"""BERT as an ONNX graph written from its weights alone: no torch, no transformers, under a second.

The exports every fast path runs on (`backends.onnx_fp32_path`, `cross_encoder.onnx_export`: ONNX Runtime reads
them, OpenVINO converts them) were traced with `torch.onnx.export`, so a process that found no export in its cache
(a fresh container, a cleared `~/.cache/souk`, an index built on another machine) had to import torch and
transformers (3-4 s) before its first query could run anywhere but on torch itself. This module writes the same
graph from `config.json` and `model.safetensors` with numpy and `onnx.helper`: Hugging Face's `BertModel` in
fp32 (absolute positions, post-layer-norm, erf GELU, the additive attention mask of the most negative float),
then either mean pooling under the attention mask (`head="mean"`: inputs `input_ids`, `attention_mask`; output
`embedding`) or `BertForSequenceClassification`'s first logit (`head="first_logit"`: inputs `input_ids`,
`token_type_ids`, `attention_mask`; output `score`; a cross-encoder whose config says `"souk_pooling": "mean"`
feeds the pooler the mean of the tokens instead of the first one, as `cross_encoder.logits` does). Node names
follow the traced graph's (`/encoder/layer.N/output/dense/MatMul`), which `backends.fp32_matmuls` selects by.

The files are untrusted: the config must be a BERT one within `LIMITS`, every tensor must be present with its
shape, and anything else raises `NotBert` (the caller then traces with torch, as before: other architectures
keep their ONNX paths). Errors name config keys and tensor names, never a path.

Misuse to avoid: building from `.bin` (pickle) weights, which are never read here; or comparing this graph with a
traced one on padded rows of a fully masked sequence (both give the mean of nothing, 0, only up to rounding).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from souk.errors import ModelError

OPSET = 17  # LayerNormalization; the traced exports used the same
LIMITS = {"hidden_size": 8192, "num_hidden_layers": 64, "num_attention_heads": 128, "intermediate_size": 65536,
          "vocab_size": 1_000_000, "max_position_embeddings": 65536, "type_vocab_size": 64}
MAX_CONFIG_BYTES = 1_000_000
MAX_BYTES = 1_500_000_000  # one protobuf holds at most 2 GB: larger models are traced with external data
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
HEADS = ("mean", "first_logit")
# what a cross-encoder's head reads (`souk_pooling` in its config.json; absent: "cls"): see `cross_encoder.POOLINGS`
POOLINGS = ("cls", "mean")


class NotBert(ModelError):
    """The directory is not a BERT this module can write (another architecture, pickle weights, a bad file)."""


def bert_config(model_dir: Path) -> dict:
    """The validated BERT config of `model_dir` (raises `NotBert` naming what is wrong)."""
    try:
        with open(model_dir / "config.json", "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise NotBert(f"config.json is larger than {MAX_CONFIG_BYTES} bytes")
        config = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise NotBert("config.json is missing or not JSON") from None
    if not isinstance(config, dict) or config.get("model_type") != "bert":
        raise NotBert("config.json does not describe a BERT model")
    for key, top in LIMITS.items():
        value = config.get(key, 2 if key == "type_vocab_size" else None)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise NotBert(f"config.json: {key} must be an integer from 1 to {top}")
        config[key] = value
    if config["hidden_size"] % config["num_attention_heads"]:
        raise NotBert("config.json: hidden_size is not a multiple of num_attention_heads")
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise NotBert(f"config.json: hidden_act must be one of {', '.join(ACTIVATIONS)}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise NotBert("config.json: only absolute position embeddings are written here")
    eps = config.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < 1:
        raise NotBert("config.json: layer_norm_eps must be a number between 0 and 1")
    if config.get("souk_pooling", "cls") not in POOLINGS:
        raise NotBert(f"config.json: souk_pooling must be one of {', '.join(POOLINGS)}")
    return config


def writable(model_dir: Path) -> bool:
    """True when `model_dir` looks like a BERT this module writes (its config checks out, its weights are
    safetensors): a cheap test, reading config.json only; `write_bert_onnx` still checks every tensor."""
    try:
        bert_config(model_dir)
    except NotBert:
        return False
    return (model_dir / "model.safetensors").is_file()


def _weights(model_dir: Path, config: dict, head: str) -> dict[str, np.ndarray]:
    """Every tensor the graph reads, float32, checked against the config's shapes (prefix `bert.` removed)."""
    path = model_dir / "model.safetensors"
    if not path.is_file():
        raise NotBert("no model.safetensors (pickle weights are never read)")
    if path.stat().st_size > MAX_BYTES:
        raise NotBert("model.safetensors is too large for one ONNX file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            names = set(f.keys())
            prefix = "bert." if "bert.embeddings.word_embeddings.weight" in names else ""
            wanted = _shapes(config, head, prefix)
            missing = sorted(n for n in wanted if n not in names)
            if missing:
                raise NotBert(f"model.safetensors lacks {missing[0]}" + (f" and {len(missing) - 1} more"
                                                                         if len(missing) > 1 else ""))
            out = {}
            for name, shape in wanted.items():
                t = f.get_tensor(name)
                if t.shape != shape or t.dtype.kind != "f":
                    raise NotBert(f"model.safetensors: {name} has shape {t.shape} ({t.dtype}), not {shape}")
                out[name[len(prefix):] if name.startswith(prefix) else name] = np.ascontiguousarray(t, np.float32)
    except NotBert:
        raise
    except Exception as e:  # a truncated or foreign file, a dtype numpy lacks (bf16)
        raise NotBert(f"model.safetensors cannot be read ({type(e).__name__})") from None
    return out


def _shapes(config: dict, head: str, prefix: str) -> dict[str, tuple[int, ...]]:
    h, inner = config["hidden_size"], config["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (config["vocab_size"], h),
              "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}."
        for part in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[layer + part + ".weight"], shapes[layer + part + ".bias"] = (h, h), (h,)
        shapes[layer + "intermediate.dense.weight"], shapes[layer + "intermediate.dense.bias"] = (inner, h), (inner,)
        shapes[layer + "output.dense.weight"], shapes[layer + "output.dense.bias"] = (h, inner), (h,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[layer + norm + ".weight"], shapes[layer + norm + ".bias"] = (h,), (h,)
    shapes = {prefix + k: v for k, v in shapes.items()}
    if head == "first_logit":
        labels = config.get("num_labels") or len(config.get("id2label") or {}) or 2
        shapes |= {prefix + "pooler.dense.weight": (h, h), prefix + "pooler.dense.bias": (h,),
                   "classifier.weight": (labels, h), "classifier.bias": (labels,)}
    return shapes


class _Graph:
    """Nodes and initializers of one graph, named as the traced export names them."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []

    def const(self, name: str, value: "np.ndarray | np.generic") -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name + "_output_0"], name=name, **attrs))
        return name + "_output_0"

    def linear(self, x: str, w: dict[str, np.ndarray], module: str) -> str:
        """x @ W.T + b of the torch Linear `module` (its weight stored transposed, as MatMul reads it)."""
        weight = self.const(f"onnx::{module}.weight", w[module + ".weight"].T.copy())
        bias = self.const(f"{module}.bias", w[module + ".bias"])
        scope = re.sub(r"layer/(\d+)", r"layer.\1", "/" + module.replace(".", "/"))
        return self.op("Add", [self.op("MatMul", [x, weight], scope + "/MatMul"), bias], scope + "/Add")

    def norm(self, x: str, w: dict[str, np.ndarray], module: str, eps: float) -> str:
        scope = "/" + module.replace(".", "/")
        return self.op("LayerNormalization", [x, self.const(module + ".weight", w[module + ".weight"]),
                                              self.const(module + ".bias", w[module + ".bias"])],
                       scope + "/LayerNormalization", axis=-1, epsilon=float(eps))


def _activation(g: _Graph, x: str, kind: str, scope: str) -> str:
    if kind == "relu":
        return g.op("Relu", [x], scope + "/Relu")
    half = g.const(scope + "/half", np.float32(0.5))
    one = g.const(scope + "/one", np.float32(1.0))
    if kind == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)), torch's exact GELU as the tracer writes it
        scaled = g.op("Div", [x, g.const(scope + "/sqrt2", np.float32(math.sqrt(2.0)))], scope + "/Div")
        inner = g.op("Add", [g.op("Erf", [scaled], scope + "/Erf"), one], scope + "/Add")
    else:  # the tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x], scope + "/Sq"), x], scope + "/Cube")
        poly = g.op("Add", [x, g.op("Mul", [cube, g.const(scope + "/c", np.float32(0.044715))], scope + "/Mc")],
                    scope + "/Poly")
        arg = g.op("Mul", [poly, g.const(scope + "/k", np.float32(math.sqrt(2.0 / math.pi)))], scope + "/Arg")
        inner = g.op("Add", [g.op("Tanh", [arg], scope + "/Tanh"), one], scope + "/Add")
    return g.op("Mul", [g.op("Mul", [x, half], scope + "/Half"), inner], scope + "/Mul")


def _masked_mean(g: _Graph, x: str, maskf: str) -> str:
    """The mean of the token states `x` (batch, seq, hidden) under the float mask (batch, seq)."""
    m = g.op("Unsqueeze", [maskf, g.const("/pool_axis", np.asarray([-1], dtype=np.int64))], "/pool/Unsqueeze")
    axis = g.const("/pool_seq_axis", np.asarray([1], dtype=np.int64))
    total = g.op("ReduceSum", [g.op("Mul", [x, m], "/pool/Mul"), axis], "/pool/ReduceSum", keepdims=0)
    count = g.op("ReduceSum", [m, axis], "/pool/ReduceSum_1", keepdims=0)
    count = g.op("Max", [count, g.const("/pool_floor", np.float32(1e-9))], "/pool/Clip")
    return g.op("Div", [total, count], "/pool/Div")


def write_bert_onnx(model_dir: Path, target: Path, head: str = "mean") -> None:
    """Write the fp32 ONNX graph of the BERT in `model_dir` to `target` (see the module docstring for `head`);
    raises `NotBert` when the directory is not one this module writes."""
    import onnx
    from onnx import TensorProto, helper

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}")
    config = bert_config(model_dir)
    w = _weights(model_dir, config, head)
    h, heads = config["hidden_size"], config["num_attention_heads"]
    eps, act = config.get("layer_norm_eps", 1e-12), config.get("hidden_act", "gelu")
    g = _Graph()
    i64 = lambda *v: np.asarray(v, dtype=np.int64)  # noqa: E731

    ids, mask = "input_ids", "attention_mask"
    words = g.op("Gather", [g.const("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]),
                            ids], "/embeddings/word_embeddings/Gather")
    seq = g.op("Gather", [g.op("Shape", [ids], "/embeddings/Shape"), g.const("/embeddings/one_i64", np.int64(1))],
               "/embeddings/Gather_seq", axis=0)
    positions = g.op("Range", [g.const("/embeddings/zero", np.int64(0)), seq, g.const("/embeddings/step", np.int64(1))],
                     "/embeddings/Range")
    x = g.op("Add", [words, g.op("Gather", [g.const("embeddings.position_embeddings.weight",
                                                    w["embeddings.position_embeddings.weight"]), positions],
                                 "/embeddings/position_embeddings/Gather")], "/embeddings/Add")
    types = w["embeddings.token_type_embeddings.weight"]
    if head == "first_logit":
        kinds = g.op("Gather", [g.const("embeddings.token_type_embeddings.weight", types), "token_type_ids"],
                     "/embeddings/token_type_embeddings/Gather")
    else:  # no token types given: every token is type 0, as the model's default
        kinds = g.const("/embeddings/token_type_0", types[0])
    x = g.norm(g.op("Add", [x, kinds], "/embeddings/Add_1"), w, "embeddings.LayerNorm", eps)

    maskf = g.op("Cast", [mask], "/Cast_mask", to=TensorProto.FLOAT)
    blocked = g.op("Sub", [g.const("/one_f", np.float32(1.0)), maskf], "/Sub_mask")
    bias = g.op("Mul", [blocked, g.const("/min_f", np.float32(np.finfo(np.float32).min))], "/Mul_mask")
    bias = g.op("Unsqueeze", [bias, g.const("/mask_axes", i64(1, 2))], "/Unsqueeze_mask")  # (batch, 1, 1, seq)
    split = g.const("/heads_shape", i64(0, 0, heads, h // heads))
    merged = g.const("/hidden_shape", i64(0, 0, h))
    scale = g.const("/scale", np.float32(math.sqrt(h // heads)))
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}"
        scope = f"/encoder/layer.{i}/attention/self"

        def project(part: str, perm: list[int]) -> str:
            y = g.linear(x, w, f"{layer}.attention.self.{part}")
            y = g.op("Reshape", [y, split], f"{scope}/{part}/Reshape")
            return g.op("Transpose", [y], f"{scope}/{part}/Transpose", perm=perm)

        q, k, v = project("query", [0, 2, 1, 3]), project("key", [0, 2, 3, 1]), project("value", [0, 2, 1, 3])
        scores = g.op("Div", [g.op("MatMul", [q, k], scope + "/MatMul"), scale], scope + "/Div")
        probs = g.op("Softmax", [g.op("Add", [scores, bias], scope + "/Add")], scope + "/Softmax", axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v], scope + "/MatMul_1")], scope + "/Transpose",
                   perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merged], scope + "/Reshape")
        out = g.linear(ctx, w, f"{layer}.attention.output.dense")
        x = g.norm(g.op("Add", [out, x], f"/encoder/layer.{i}/attention/output/Add_res"), w,
                   f"{layer}.attention.output.LayerNorm", eps)
        inner = _activation(g, g.linear(x, w, f"{layer}.intermediate.dense"), act,
                            f"/encoder/layer.{i}/intermediate/intermediate_act_fn")
        out = g.linear(inner, w, f"{layer}.output.dense")
        x = g.norm(g.op("Add", [out, x], f"/encoder/layer.{i}/output/Add_res"), w, f"{layer}.output.LayerNorm", eps)

    if head == "mean":
        result, out_name, out_shape = _masked_mean(g, x, maskf), "embedding", ["batch", h]
    else:
        if config.get("souk_pooling", "cls") == "mean":
            first = _masked_mean(g, x, maskf)
        else:
            first = g.op("Gather", [x, g.const("/pooler/zero", np.int64(0))], "/pooler/Gather", axis=1)
        pooled = g.op("Tanh", [g.linear(first, w, "pooler.dense")], "/pooler/activation/Tanh")
        labels = g.linear(pooled, w, "classifier")
        result, out_name, out_shape = g.op("Gather", [labels, g.const("/score/zero", np.int64(0))], "/score/Gather",
                                           axis=1), "score", ["batch"]
    g.nodes.append(helper.make_node("Identity", [result], [out_name], name="/output/Identity"))

    dims = ["batch", "seq"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in (["input_ids", "token_type_ids", "attention_mask"] if head == "first_logit"
                        else ["input_ids", "attention_mask"])]
    graph = helper.make_graph(g.nodes, "souk-bert", inputs,
                              [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="souk")
    model.ir_version = 8  # what ONNX Runtime and OpenVINO of the pinned ranges read
    onnx.save(model, str(target))
