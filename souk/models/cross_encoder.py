"""Cross-encoder: (query, title, text) -> one relevance score, a transformer pass over the pair.

Input is `[CLS] query [SEP] title [SEP] text [SEP]` packed by `FieldLimits`: the query is cut to its
own budget, the title gets its budget next, and the text fills what is left, so a long abstract never
crowds out the title. A model directory holds the transformers weights (`save_pretrained`), the
tokenizer files and `manifest.json` (kind `cross-encoder`, base model, limits, how its score combines
with the previous stage's). Inference runs on the bi-encoder's exact paths: torch-fp32, torch-bf16, and fp32
on ONNX Runtime or OpenVINO, bf16 on OpenVINO (one ONNX export per model directory, built once into the cache
and hash-checked like the encoder's), whichever is fastest on this machine within `TOLERANCE` of fp32 (bf16 is
offered only where the CPU has bf16 instructions; ONNX Runtime not when capped to AVX2; the choice is measured
once per model and machine, on pairs of the index's own documents (`measure_paths(path, probe)`: when the model
is activated, and in the background of a server that finds it unmeasured), and cached; `measured_path` reads it
back for `souk stats`). A search never measures: where nothing was measured on this machine yet (an index copied
from another, a cleared cache) it takes `unmeasured_path` (fp32 on ONNX Runtime over an export written without
torch), the way the bi-encoder's queries do.

Misuse: scoring pairs packed with other limits than the model was trained with (read them from the
manifest, which `CrossEncoder` does), or comparing raw scores across queries (they are per-query logits).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import MethodType
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from souk.errors import ModelError, ModelUnavailable
from souk.models.backends import BACKENDS, OrtStreams, StreamedModel, exported_as, quiet_transformers
from souk.models.machine import detect_machine
from souk.models.onnx_bert import POOLINGS
from souk.models.registry import cache_dir
from souk.models.store import read_model_manifest

KIND = "cross-encoder"
PATHS = ("torch-fp32", "torch-bf16", "onnx-fp32", "openvino-fp32", "openvino-bf16")  # no int8: it costs nDCG
# Scores on a path vs fp32 on the probe: near-lossless means the order of candidates barely moves. bf16
# weights gave correlation 0.9998 on a fitted MiniLM cross-encoder and moved SciFact dev nDCG@10 of the
# top 20 by 0.002 (`souk bench rerank`).
TOLERANCE = {"corr_min": 0.9995}
CHOICE_FORMAT = 7  # bump when the measurement changes: cached choices are keyed by it
ROUNDS = 3
Pair = tuple[list[int], list[int]]  # (input ids, token type ids) of one packed pair


@dataclass(frozen=True)
class FieldLimits:
    """Token budgets: the whole pair (special tokens included), the query, and the title.

    The defaults keep a search's latency budget with long texts: 20 pairs of 96 tokens took 250 ms through
    6 MiniLM layers on 2 Intel cores in bf16 (one layer in fp32 on 2 AVX2-only AMD EPYC cores: ~100 ms of CPU),
    so the fitter also keeps fewer layers (see
    `souk.training.cross.measured_layers`, timed on the fitting machine); a long text gives way first, the title
    keeps its share."""

    max_length: int = 96
    query: int = 24
    title: int = 32

    def __post_init__(self) -> None:
        if not 16 <= self.max_length <= 512:
            raise ModelError(f"max_length must be in 16..512, got {self.max_length}")
        if self.query < 1 or self.title < 0 or self.query + 4 >= self.max_length:
            raise ModelError(f"query ({self.query}) and title ({self.title}) budgets must leave room in "
                             f"max_length {self.max_length}")


_SPACE = re.compile(r"\s")
# a text's head of this many characters a token needed holds them (English ~4.5): of 3,000 SciFact abstracts at 96
# tokens, 38 fell short and were tokenized whole (at 8: none, but 26% slower; at 5: 818)
HEAD_CHARS_PER_TOKEN = 6


def text_head(text: str, chars: int) -> str:
    """`text` cut at the first whitespace at or after `chars` characters (whole when it has none within
    `chars` more): a WordPiece tokenizer whose words never span whitespace gives it the text's first ids."""
    if len(text) <= chars:
        return text
    space = _SPACE.search(text, chars, 2 * chars)
    return text[:space.start()] if space else text


class PairPacker:
    """Tokenizes queries and documents once (no special tokens) and packs them into model inputs."""

    def __init__(self, tokenizer_file: Path, limits: FieldLimits):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_file))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.limits = limits
        cls, sep = self.tok.token_to_id("[CLS]"), self.tok.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ModelError(f"{tokenizer_file}: the tokenizer has no [CLS]/[SEP] tokens (a BERT WordPiece "
                             "tokenizer is expected)")
        self.cls: int = cls
        self.sep: int = sep
        self.pad = self.tok.token_to_id("[PAD]") or 0
        # words never span whitespace (BERT's pre-tokenizer): a text cut at whitespace gives its first ids
        self._words_split = type(self.tok.pre_tokenizer).__name__ == "BertPreTokenizer"

    def tokens(self, texts: Sequence[str], cap: int) -> list[list[int]]:
        """Token ids of each text (no special tokens), cut at `cap`."""
        if not texts:
            return []
        return [e.ids[:cap] for e in self.tok.encode_batch([str(t or "") for t in texts], add_special_tokens=False)]

    def doc_tokens(self, docs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """(title ids, text ids) of each (title, text), each cut at what a pair could ever hold. A long text is
        tokenized from its head (`text_head`: the same ids; SciFact's abstracts, ~1,400 characters, tokenized
        whole for 96 tokens took twice the time)."""
        cap = self.limits.max_length
        titles = self.tokens([d[0] for d in docs], min(cap, self.limits.title))
        if not self._words_split:
            return list(zip(titles, self.tokens([d[1] for d in docs], cap)))
        heads = [text_head(str(d[1] or ""), cap * HEAD_CHARS_PER_TOKEN) for d in docs]
        texts = self.tokens(heads, cap)
        short = [i for i, (ids, head) in enumerate(zip(texts, heads)) if len(ids) < cap and head != (docs[i][1] or "")]
        for i, ids in zip(short, self.tokens([docs[i][1] for i in short], cap)):  # (rare: very long words)
            texts[i] = ids
        return list(zip(titles, texts))

    def pack(self, query: list[int], doc: tuple[list[int], list[int]]) -> Pair:
        """`[CLS] q [SEP] title [SEP] text [SEP]` (no title: `[CLS] q [SEP] text [SEP]`) within the limits."""
        lim = self.limits
        q = query[:lim.query]
        title, text = doc
        room = lim.max_length - len(q) - 3 - (1 if title else 0)
        t = title[:min(lim.title, room)]
        x = text[:max(room - len(t), 0)]
        second = t + [self.sep] + x if t else x
        ids = [self.cls, *q, self.sep, *second, self.sep]
        return ids, [0] * (len(q) + 2) + [1] * (len(second) + 1)

    def batches(self, pairs: Sequence[Pair], batch_size: int):
        """(rows, ids, types, mask) numpy batches over length-sorted pairs (less padding)."""
        lengths = np.fromiter((len(p[0]) for p in pairs), dtype=np.int64, count=len(pairs))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self.pad, dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                n = lengths[r]
                ids[j, :n], types[j, :n], mask[j, :n] = pairs[r][0], pairs[r][1], 1
            yield rows, ids, types, mask


@dataclass(frozen=True)
class Combination:
    """How the cross score meets the previous stage's score: per query, both are min-max scaled over
    the candidates and mixed as `weight * cross + (1 - weight) * prior` (weight 1: the cross score alone)."""

    weight: float = 1.0

    @property
    def reads_cross(self) -> bool:
        """False when the mix gives the cross score no weight: the order is the previous stage's, and scoring
        the pairs would be wasted work (the fitter sets weight 0 when the model did not beat its prior on dev)."""
        return self.weight > 0.0

    def apply(self, cross: np.ndarray, prior: np.ndarray) -> np.ndarray:
        if self.weight >= 1.0 or not len(cross):
            return np.asarray(cross, dtype=np.float32)
        return (self.weight * minmax(cross) + (1.0 - self.weight) * minmax(prior)).astype(np.float32)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to 0..1 over the list (a constant list becomes all zeros; NaN counts as the minimum)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=np.nanmin(x) if np.isfinite(x).any() else 0.0)
    span = x.max() - x.min() if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


# What the head reads: "cls", the [CLS] token's state (`BertForSequenceClassification`), or "mean", the mean of
# every token's state under the attention mask (`souk_pooling` in the model's config.json; absent: "cls"). MiniLM's
# [CLS] state is nearly the same for every input through its first 3 layers (an attention sink: max |difference|
# between three unrelated HomeDepot pairs 1e-3 of its norm at layers 1-3), so the truncated crosses a latency
# budget gives (1-3 layers) read nothing there: HomeDepot's 3-layer fits stayed at the loss of chance, log 4, for
# 1,000+ steps, while 4 layers learnt. The mean of the tokens varies with the input at every depth. (`POOLINGS`, from
# the ONNX writer, which checks the same key.)


def pooling_of(net) -> str:
    """The pooling a loaded model's config names (raises `ModelUnavailable` for another value: untrusted file)."""
    pooling = getattr(net.config, "souk_pooling", "cls")
    if pooling not in POOLINGS:
        raise ModelUnavailable(f"its config's souk_pooling must be one of {', '.join(POOLINGS)}")
    return pooling


def with_pooling(net):
    """`net` (a loaded `BertForSequenceClassification`) reading the pooling its config names: for "mean" its
    `forward` (the one `nn.Module.__call__`, DDP and tracing call) pools the tokens' mean under the mask before the
    pooler's dense layer and the classifier. Raises `ModelUnavailable` for an unknown pooling. Misuse: calling the
    class's forward directly (`type(net).forward(net, ...)`), which reads [CLS]."""
    if pooling_of(net) == "mean":
        if not mean_poolable(net):
            raise ModelUnavailable("its config's souk_pooling is mean, which needs a BERT with a pooler")
        net.forward = MethodType(_mean_forward, net)
    return net


def mean_poolable(net) -> bool:
    """Whether the model has the parts mean pooling feeds (a BERT's pooler, dropout and classifier)."""
    pooler = getattr(net.base_model, "pooler", None)
    return pooler is not None and hasattr(pooler, "dense") and hasattr(net, "classifier") and hasattr(net, "dropout")


def _mean_forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_: Any):
    from transformers.modeling_outputs import SequenceClassifierOutput

    bert = self.base_model
    hidden = bert(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).last_hidden_state
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    pooled = bert.pooler.activation(bert.pooler.dense(pooled))
    return SequenceClassifierOutput(logits=self.classifier(self.dropout(pooled)))


def logits(net, ids, types, mask):
    """The model's first logit per pair (float32 tensor); works with torch tensors on any device, and with a
    model in DDP. The model must come from `with_pooling` (as `new_model` and the loaders here give it)."""
    return net(input_ids=ids, token_type_ids=types, attention_mask=mask).logits[:, 0].float()


def model_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """The document fields a cross-encoder's manifest says it was trained on: {"title": name or None, "text": [...]}."""
    return manifest.get("fields", {"title": "title", "text": ["text"]})


def limits_of(manifest: dict[str, Any]) -> FieldLimits:
    return FieldLimits(**manifest.get("limits", {}))


class CrossEncoder:
    """A fitted cross-encoder directory, loaded for scoring on one path (`backend`)."""

    def __init__(self, path: str | Path, backend: str = "auto", batch_size: int = 32, max_length: int | None = None):
        self.path = Path(path)
        try:
            self._open(backend, batch_size, max_length)
        except ModelError:
            raise
        except Exception as e:  # tokenizers, safetensors, torch's unpickler, transformers: a file it refuses
            raise ModelUnavailable(f"model {self.path.name}: its files cannot be loaded ({type(e).__name__}); "
                                   "refit it, or activate another with souk models") from None

    def _open(self, backend: str, batch_size: int, max_length: int | None) -> None:
        self.manifest = read_model_manifest(self.path, KIND)
        self.packer = packer_for(self.path, max_length, self.manifest)
        self.combination = Combination(**self.manifest.get("combination", {}))
        self.batch_size = batch_size
        self.backend = path_here(self.path, self.packer.limits.max_length)[0] if backend == "auto" else backend
        if self.backend not in PATHS:
            raise ModelError(f"unknown cross-encoder backend {self.backend!r}; known: auto, {', '.join(PATHS)}")
        self._forward = _load(self.path, self.backend)

    @property
    def fields(self) -> dict[str, Any]:
        """The document fields the model was trained on: {"title": name or None, "text": [names]}."""
        return model_fields(self.manifest)

    def score_pairs(self, pairs: Sequence[Pair]) -> np.ndarray:
        """One score per packed pair (float32)."""
        out = np.zeros(len(pairs), dtype=np.float32)
        for rows, ids, types, mask in self.packer.batches(pairs, self.batch_size):
            out[rows] = self._forward(ids, types, mask)
        return out

    def score(self, query: str, docs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Scores of (title, text) documents for one query."""
        q = self.packer.tokens([query], self.packer.limits.query)[0]
        return self.score_pairs([self.packer.pack(q, d) for d in self.packer.doc_tokens(docs)])


def packer_for(path: Path, max_length: int | None = None, manifest: dict[str, Any] | None = None) -> PairPacker:
    """The pair packer of a model directory at its own limits, or with the pair cut to `max_length`."""
    limits = limits_of(manifest if manifest is not None else read_model_manifest(path, KIND))
    if max_length is not None:
        limits = FieldLimits(max_length, min(limits.query, max_length - 8), limits.title)
    return PairPacker(path / "tokenizer.json", limits)


def _load(path: Path, backend: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """The scoring function of one path; sets torch's threads by `torch_threads` (process-wide)."""
    if backend in ("onnx-fp32", "openvino-fp32", "openvino-bf16"):
        return _load_exported(path, backend)
    import torch

    torch.set_num_threads(torch_threads())
    quiet_transformers()
    dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float32
    net = _classifier(path, dtype=dtype)

    def forward(ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return logits(net, torch.from_numpy(ids), torch.from_numpy(types), torch.from_numpy(mask)).numpy()

    return forward


def _classifier(path: Path, **options: Any):
    """The model directory's torch classifier in eval mode, reading its pooling (`with_pooling`); any failure (a
    truncated safetensors file, a pickle torch refuses, a broken or hostile config) is one `ModelUnavailable` line
    naming the model, never a path."""
    from transformers import AutoModelForSequenceClassification

    again = "refit it, or activate another with souk models"
    try:
        return with_pooling(AutoModelForSequenceClassification.from_pretrained(str(path), **options).eval())
    except ModelUnavailable as e:
        raise ModelUnavailable(f"model {path.name}: {e}; {again}") from None
    except Exception as e:
        raise ModelUnavailable(f"model {path.name}: cannot load the cross-encoder weights ({type(e).__name__}); "
                               f"{again}") from None


INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def _load_exported(path: Path, backend: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """ONNX Runtime (fp32) or OpenVINO (fp32, bf16) over the model's ONNX export, with single-threaded runs side by
    side and a call's pairs split across them (OpenVINO: `torch_threads()` streams; ONNX Runtime: `OrtStreams`, one
    run per core, also under load, since its runs neither spin nor wait at a barrier: on an AVX2-only AMD EPYC, 2
    cores, HomeDepot's 20 pairs of ~27 tokens through 3 layers took 92 ms of CPU a query that way against 139 ms
    in one session of 2 threads, whose barriers wait on short ops; at load 8, p50 257 ms against 282 on one
    thread, `torch_threads`' choice there, and 336 in one 2-thread session). End to end at load ~1.7 the two
    were within noise: `souk bench serve --pipeline full --clients 1` on HomeDepot p50 55.3 / 50.2 ms against
    49.9 / 52.9 (cross 47.8 / 43.6 against 43.0 / 46.0)."""
    model = onnx_export(path)
    if backend == "onnx-fp32":
        streams = OrtStreams(model)
        return lambda ids, types, mask: streams.run(dict(zip(INPUTS, (ids, types, mask))))
    streamed = StreamedModel(model, "bf16" if backend == "openvino-bf16" else "f32", threads=torch_threads())
    return lambda ids, types, mask: streamed(dict(zip(INPUTS, (ids, types, mask))))


def onnx_export(path: Path) -> Path:
    """The fp32 ONNX export of a cross-encoder directory (inputs `INPUTS`, output: the first logit per pair), built
    once into the cache (`onnx_bert` for a BERT, else traced with torch); keyed by the directory, its manifest's
    creation time and its weights' size and mtime."""
    manifest = read_model_manifest(path, KIND)
    weights = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir()
                     if p.suffix in (".safetensors", ".bin"))
    key = hashlib.sha1(json.dumps([str(path.resolve()), manifest.get("created"), weights]).encode()).hexdigest()[:16]

    def build(folder: Path) -> None:
        from souk.models.onnx_bert import NotBert, write_bert_onnx

        try:  # a BERT is written from its weights (no torch); other architectures are traced
            return write_bert_onnx(path, folder / "model.onnx", head="first_logit")  # (its config's pooling)
        except NotBert:
            pass
        import warnings

        import torch

        quiet_transformers()
        net = _classifier(path, attn_implementation="eager")

        class Scores(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, input_ids, token_type_ids, attention_mask):
                return logits(self.net, input_ids, token_type_ids, attention_mask)

        example = (torch.tensor([[1, 5, 2], [1, 2, 0]]), torch.tensor([[0, 0, 1], [0, 1, 0]]),
                   torch.tensor([[1, 1, 1], [1, 1, 0]]))
        axes = {name: {0: "batch", 1: "seq"} for name in INPUTS}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Scores(), example, str(folder / "model.onnx"), input_names=list(INPUTS),
                              output_names=["score"], opset_version=17, dynamo=False,
                              dynamic_axes={**axes, "score": {0: "batch"}})

    return exported_as(f"cross-{key}", str(path.resolve()), "onnx", build) / "model.onnx"


def torch_threads() -> int:
    """Threads for torch work: the cores this process may use, or half of them while other processes
    already keep them busy (OpenMP threads spinning against other work cost more than they give: a
    2-core machine under load ran training steps 2.5x and bf16 scoring 2x slower with 2 threads than 1);
    `SOUK_TORCH_THREADS` overrides."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] > cores + 0.5
    return max(1, int(os.environ.get("SOUK_TORCH_THREADS", cores // 2 if busy else cores)))


def unmeasured_path(path: Path) -> str:
    """The path for a model nothing was measured for on this machine: onnx-fp32 where ONNX Runtime runs here and
    the model is a BERT whose export `onnx_bert` writes without torch (about a second for 6 layers), so a cold
    search imports no torch and waits for no measurement; else torch-fp32 (the reference)."""
    from souk.models.onnx_bert import writable

    return "onnx-fp32" if BACKENDS["onnx-fp32"].missing(detect_machine()) is None and writable(Path(path)) \
        else "torch-fp32"


def path_here(path: Path, max_length: int | None = None) -> tuple[str, bool]:
    """The path `backend="auto"` takes for the model directory on this machine now (pairs cut to `max_length`,
    default its own), and whether this machine measured it (else `unmeasured_path`). Reads small files only."""
    choice = measured_path(path, max_length)
    return (choice["backend"], True) if choice else (unmeasured_path(path), False)


def offered_paths() -> dict[str, str | None]:
    """Each path and why this machine should not use it (None: offered), by the encoder's own checks."""
    m = detect_machine()
    return {name: BACKENDS[name].missing(m) for name in PATHS}


def choose_path(path: Path, packer: PairPacker, refresh: bool = False,
                probe: Sequence[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """Measure each offered path on a probe of packed pairs (pairs/s, agreement with fp32) and keep the
    fastest within `TOLERANCE`; cached per model directory (published ones never change) and machine.
    `probe`: (query, title, text) triples of the caller's own documents (`souk.ranking.rerank.probe_triples`
    gives each sampled document with a query from its own title and one from another's), so
    agreement is measured on the score spread the model meets there; without one, pseudo-text of the vocabulary
    (a trained model scores all of it alike, so bf16's rounding shows larger there: correlation 0.998 where
    real HomeDepot pairs gave 0.9999). The paths are timed in turns, best of `ROUNDS`, so load from other
    processes falls on each alike. Processes measuring the same model at once (a server's workers) take turns
    on a lock file: the later ones read the first one's verdict."""
    import fcntl

    file = _choice_file(path, packer.limits.max_length)
    if file.exists() and not refresh:
        return _read_verdict(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if file.exists() and not refresh:
            return _read_verdict(file)
        return _measure(path, packer, file, probe)


def _measure(path: Path, packer: PairPacker, file: Path,
             probe: Sequence[tuple[str, str, str]] | None) -> dict[str, Any]:
    pairs = _real_pairs(packer, probe) if probe else probe_pairs(packer)
    report = time_paths(path, packer, pairs)
    result = _verdict(report) | {"probe": "documents" if probe else "pseudo-text", "pairs": len(pairs)}
    tmp = file.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, file)
    return result


def time_paths(path: Path, packer: PairPacker, pairs: Sequence[Pair], chunk: int = 16,
               paths: Sequence[str] | None = None, in_order: bool = False) -> dict[str, dict[str, Any]]:
    """Each path's pairs/s on `pairs` (`chunk` pairs a call, best of `ROUNDS`, the paths in turns) and its agreement
    with torch-fp32 (`corr`, `max_abs_over_std`; where torch-fp32 is timed too), or why it is `skipped` here;
    nothing is cached. `paths`: only these (default every path); `in_order`: each call takes the next `chunk`
    pairs as given (one query's candidates, as a search scores them) instead of pairs of like length from all
    (which pads less: a search's call would be underpriced)."""
    report: dict[str, dict[str, Any]] = {name: {"skipped": why} for name, why in offered_paths().items()
                                         if why and (paths is None or name in paths)}
    forwards = {name: _load(path, name) for name in PATHS if name not in report and (paths is None or name in paths)}
    calls = _calls(packer, pairs, chunk, in_order)
    scores = {}
    for name, forward in forwards.items():  # also the warm-up
        scores[name] = np.concatenate([forward(ids, types, mask) for ids, types, mask in calls])
    best = _in_turns(forwards, calls, len(pairs), ROUNDS)
    ref = scores.get("torch-fp32")
    for name in forwards:
        s = scores[name]
        report[name] = {"pairs_per_s": round(best[name], 1)}
        if ref is not None:
            corr = float(np.corrcoef(s, ref)[0, 1]) if np.std(ref) > 0 and np.std(s) > 0 else 1.0
            report[name] |= {"corr": corr,
                             "max_abs_over_std": float(np.abs(s - ref).max() / max(float(np.std(ref)), 1e-6))}
    return report


def time_models(folders: dict[Any, Path], packer: PairPacker, pairs: Sequence[Pair], path: str, chunk: int = 16,
                rounds: int = 2 * ROUNDS) -> dict[Any, float]:
    """Pairs/s of each model folder on one inference `path`, each call the next `chunk` pairs as given (`in_order`
    in `time_paths`), the models in turns, best of `rounds`: models compared so meet the same moments of the
    machine's load (a 6-layer probe timed after the 1-layer one it was set against moved 39-46 ms a query on a
    quiet machine)."""
    forwards = {key: _load(folder, path) for key, folder in folders.items()}
    calls = _calls(packer, pairs, chunk, in_order=True)
    for forward in forwards.values():  # warm-up
        forward(*calls[0])
    return _in_turns(forwards, calls, len(pairs), rounds)


def _in_turns(forwards: dict[Any, Callable], calls: list[tuple], pairs: int, rounds: int) -> dict[Any, float]:
    """Pairs/s of each forward over all `calls` (`pairs` in all), the forwards in turns (the order reversed each
    round), best of `rounds`."""
    best = {key: 0.0 for key in forwards}
    keys = list(forwards)
    for r in range(rounds):
        for key in keys if r % 2 == 0 else keys[::-1]:
            forward = forwards[key]
            t0 = time.perf_counter()
            for ids, types, mask in calls:
                forward(ids, types, mask)
            best[key] = max(best[key], pairs / (time.perf_counter() - t0))
    return best


def _choice_file(path: Path, max_length: int) -> Path:
    manifest = read_model_manifest(path, KIND)
    key = hashlib.sha1(json.dumps([str(path.resolve()), manifest.get("created"), detect_machine().signature(),
                                   max_length, CHOICE_FORMAT]).encode()).hexdigest()[:16]
    return cache_dir() / "models" / f"cross-choice-{key}.json"


def measured_path(path: Path, max_length: int | None = None) -> dict[str, Any] | None:
    """What this machine measured for the model directory at its own limits (or pairs cut to `max_length`):
    `choose_path`'s verdict (`backend`, and `pairs_per_s` / `corr` of each path), without measuring; None when
    nothing was measured yet (then `path_here` says which path a search takes)."""
    try:
        length = max_length or limits_of(read_model_manifest(Path(path), KIND)).max_length
        file = _choice_file(Path(path), length)
        return _read_verdict(file) if file.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return None


def _read_verdict(file: Path) -> dict[str, Any]:
    """A cached measurement, its verdict applied again (so a changed `TOLERANCE` applies to it)."""
    data = json.loads(file.read_text())
    return _verdict(data["paths"]) | {"probe": data.get("probe", "pseudo-text"), "pairs": data.get("pairs")}


def _verdict(report: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ok = {n: r for n, r in report.items() if "pairs_per_s" in r and r["corr"] >= TOLERANCE["corr_min"]}
    best = max(ok, key=lambda n: ok[n]["pairs_per_s"]) if ok else "torch-fp32"
    return {"backend": best, "tolerance": TOLERANCE, "paths": report}


def measure_paths(path: Path, probe: Sequence[tuple[str, str, str]], max_length: int | None = None,
                  refresh: bool = False) -> dict[str, Any]:
    """`choose_path` for a model directory (pairs cut to `max_length`, default its own) on `probe`, (query, title,
    text) triples of the caller's documents; the verdict `CrossEncoder(path, "auto")` then reads back."""
    triples = [(str(q), str(t), str(x)) for q, t, x in probe]
    return choose_path(Path(path), packer_for(Path(path), max_length), refresh, triples)


def _real_pairs(packer: PairPacker, probe: Sequence[tuple[str, str, str]]) -> list[Pair]:
    queries = packer.tokens([q for q, _, _ in probe], packer.limits.query)
    docs = packer.doc_tokens([(title, text) for _, title, text in probe])
    return [packer.pack(q, d) for q, d in zip(queries, docs)]


def probe_pairs(packer: PairPacker, n: int = 48, length: int | None = None) -> list[Pair]:
    """Deterministic pseudo-text pairs of realistic lengths from the tokenizer's own vocabulary (every pair
    packed to `length` tokens where given: a 4-token query, a 4-token title, the text filling the rest)."""
    rng = np.random.default_rng(0)
    vocab = packer.tok.get_vocab_size()
    lo = min(1000, vocab // 2)  # past the special and rare tokens at the start of a BERT vocabulary
    out = []
    for i in range(n):
        if length is not None:
            q, title = rng.integers(lo, vocab, size=4).tolist(), rng.integers(lo, vocab, size=4).tolist()
            text = rng.integers(lo, vocab, size=max(1, length - 12)).tolist()
            out.append(packer.pack(q, (title, text)))
            continue
        q = rng.integers(lo, vocab, size=int(rng.integers(4, 20))).tolist()
        doc = (rng.integers(lo, vocab, size=12).tolist(),
               rng.integers(lo, vocab, size=int(rng.integers(20, 300))).tolist())
        out.append(packer.pack(q, doc))
    return out


def _calls(packer: PairPacker, pairs: Sequence[Pair], size: int, in_order: bool = False) -> list[tuple]:
    """(ids, types, mask) of each call: `size` pairs of like length, or (`in_order`) each next `size` pairs."""
    if not in_order:
        return [(ids, types, mask) for _, ids, types, mask in packer.batches(pairs, size)]
    return [(ids, types, mask) for start in range(0, len(pairs), size)
            for _, ids, types, mask in packer.batches(pairs[start:start + size], size)]


class TokenCache:
    """Packed-ready document tokens by id, least recently used dropped beyond `capacity` (thread-safe)."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[list[int], list[int]]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(
        self, ids: Sequence[str], load: Callable[[list[str]], list[tuple[list[int], list[int]]]]
    ) -> list[tuple[list[int], list[int]]]:
        """Tokens of `ids`, calling `load(missing ids)` once for those not cached (`load` runs unlocked)."""
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._items]
        loaded = dict(zip(missing, load(missing))) if missing else {}
        with self._lock:
            self._items.update(loaded)
            gone = [i for i in dict.fromkeys(ids) if i not in self._items]  # dropped by another thread meanwhile
        if gone:
            loaded.update(zip(gone, load(gone)))
        with self._lock:
            out = []
            for doc_id in ids:
                toks = loaded.get(doc_id) or self._items[doc_id]
                self._items[doc_id] = toks
                self._items.move_to_end(doc_id)
                out.append(toks)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return out

