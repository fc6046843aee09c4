"""Domain post-training: a few hundred steps of masked-language-model training of a transformer encoder on the
index's own text (its documents, the train queries, the index's logged searches) before a fitter fine-tunes it.

The notes' recipe ("领域数据后训练": most of a catalog is never seen by training pairs; Chinese-RoBERTa-wwm's
whole-word MLM). Masking is whole-word: every token of a chosen word is masked together (15% of the words;
of their tokens 80% `[MASK]`, 10% a random token, 10% left), a word being the tokenizer's pre-token for Latin
text (`micro ##bi ##ome`) and a jieba word for Han text (BERT tokenizers cut Han into characters: `手机壳`
is one word of three tokens). The bundled MiniLM (sentence-transformers' all-MiniLM-L6-v2) ships as a bare
`BertModel` without BERT's MLM head, so a new one is made: a dense layer starting as the identity and a
layer norm over the last hidden state, the decoder tied to the input word embeddings plus a new bias (as
BERT ties them). The head is trained alone first (`head_share` of the steps, the encoder frozen), then the
whole encoder; the head is thrown away afterwards, only the encoder's weights (updated in place) go on to
fine-tuning. Both parts run in the one loop (`loop.train`), the checkpoint kept by the masked-token loss on
held-out texts (fixed masks), the time bounded by the caller's deadline (a share of the stage's budget).
Misuse: post-training on dev or test queries (only train queries, documents and the log are read).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from souk.analysis.normalize import HAN_CLASS
from souk.errors import ModelError

_HAN_RUN = re.compile(f"[{HAN_CLASS}]+")
IGNORE = -100  # label of tokens that are not predicted


@dataclass(frozen=True)
class MlmConfig:
    """How long and how hard to post-train (steps are the bound that makes runs comparable; `seconds` too)."""

    steps: int = 200
    batch_size: int = 16
    max_length: int = 128
    lr: float = 5e-5
    head_lr: float = 1e-3
    head_share: float = 0.2       # share of the steps that train the new head alone
    mask_share: float = 0.15      # share of the words masked
    held_out: int = 64            # texts kept for the held-out masked loss
    evals: int = 4
    seconds: float | None = None  # a time bound on top of `steps` (None: the caller's deadline only)


def han_spans(text: str, user_dict: str | None = None) -> list[tuple[int, int]]:
    """(start, end) of every jieba word (precise mode) of the Han runs of `text`, in order."""
    from souk.analysis.tokenize import han_segments

    out: list[tuple[int, int]] = []
    for run in _HAN_RUN.finditer(text):
        out.extend((run.start() + s, run.start() + e) for _, s, e in han_segments(run.group(), user_dict))
    return out


def word_groups(text: str, offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None],
                special: Sequence[int], user_dict: str | None = None) -> list[int]:
    """The word each token belongs to (-1: a special token): tokens inside one jieba word of a Han run share
    it, other tokens share their pre-token's (a word and its `##` pieces)."""
    spans = han_spans(text, user_dict) if _HAN_RUN.search(text) else []
    starts = [s for s, _ in spans]
    keys: dict[tuple[str, int], int] = {}
    out = []
    import bisect

    for (s, e), wid, sp in zip(offsets, word_ids, special):
        if sp or wid is None or e <= s:
            out.append(-1)
            continue
        i = bisect.bisect_right(starts, s) - 1
        key = ("h", i) if i >= 0 and spans[i][0] <= s < spans[i][1] else ("w", int(wid))
        out.append(keys.setdefault(key, len(keys)))
    return out


class Masker:
    """Whole-word masked batches from texts: (input ids, attention mask, labels) as int64 arrays."""

    def __init__(self, tokenizer_file: Path, max_length: int, mask_share: float, user_dict: str | None = None):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_file))
        self.tok.enable_truncation(max_length)
        self.tok.enable_padding()
        mask_id = self.tok.token_to_id("[MASK]")
        if mask_id is None:
            raise ModelError("domain post-training needs a BERT-style tokenizer with a [MASK] token")
        self.mask_id, self.vocab = int(mask_id), int(self.tok.get_vocab_size())
        self.mask_share, self.user_dict = mask_share, user_dict

    def batch(self, texts: Sequence[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        encs = self.tok.encode_batch([str(t) for t in texts])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encs], dtype=np.int64)
        labels = np.full_like(ids, IGNORE)
        for row, (text, e) in enumerate(zip(texts, encs)):
            groups = np.array(word_groups(text, e.offsets, e.word_ids, e.special_tokens_mask, self.user_dict))
            words = np.unique(groups[groups >= 0])
            if not len(words):
                continue
            chosen = rng.choice(words, size=max(1, int(round(len(words) * self.mask_share))), replace=False)
            where = np.flatnonzero(np.isin(groups, chosen))
            labels[row, where] = ids[row, where]
            fate = rng.random(len(where))
            ids[row, where[fate < 0.8]] = self.mask_id
            swap = where[(fate >= 0.8) & (fate < 0.9)]
            ids[row, swap] = rng.integers(self.vocab, size=len(swap))
        return ids, attention, labels


def mlm_module(encoder: Any):
    """The encoder with a new MLM head (identity dense + layer norm, decoder tied to the word embeddings)."""
    import torch
    from torch import nn

    class MaskedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            emb = encoder.get_input_embeddings()
            dim = emb.weight.shape[1]
            self.dense = nn.Linear(dim, dim)
            with torch.no_grad():
                self.dense.weight.copy_(torch.eye(dim))
                self.dense.bias.zero_()
            self.norm = nn.LayerNorm(dim, eps=1e-12)
            self.bias = nn.Parameter(torch.zeros(emb.weight.shape[0]))

        def forward(self, ids, attention, labels):
            hidden = self.encoder(input_ids=ids, attention_mask=attention).last_hidden_state
            picked = labels != IGNORE
            h = self.norm(self.dense(hidden[picked].float()))
            logits = h @ self.encoder.get_input_embeddings().weight.float().T + self.bias
            return nn.functional.cross_entropy(logits, labels[picked])

    return MaskedLM()


def post_train(encoder: Any, tokenizer_file: Path, texts: Sequence[str], config: MlmConfig, deadline: float,
               seed: int = 13, device: str = "cpu", progress: bool = False,
               user_dict: str | None = None) -> dict[str, Any]:
    """MLM-train `encoder` (a Hugging Face encoder, e.g. `BertModel`, changed in place) on `texts` for at most
    `config.steps` steps (and `config.seconds`, and `deadline`); returns the report for a manifest.
    Misuse: passing texts that include the dev queries early stopping later reads."""
    import torch

    from souk.training.kit import DevEvaluator
    from souk.training.loop import LoopConfig, Phase, train

    t0 = time.monotonic()
    torch.manual_seed(seed)
    texts = [t for t in (str(x).strip() for x in texts) if t]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    held = [texts[i] for i in order[:min(config.held_out, len(texts) // 5)]]
    learn = [texts[i] for i in order[len(held):]]
    per = config.batch_size
    if len(learn) < per or config.steps < 1:
        return {"steps": 0, "note": f"skipped: {len(learn)} texts, fewer than a batch of {per}"}
    masker = Masker(tokenizer_file, config.max_length, config.mask_share, user_dict)
    held_batches = [tuple(torch.from_numpy(a).to(device) for a in masker.batch(held[s:s + per], rng))
                    for s in range(0, len(held), per)]
    net = mlm_module(encoder).to(device)

    def loss_of(model, batch):
        return model(*(torch.from_numpy(a).to(device) for a in masker.batch(batch, batch_rng)))

    def held_loss() -> float:
        if not held_batches:
            return 0.0
        return float(np.mean([float(net(*b)) for b in held_batches]))

    def batches_for(steps: int, salt: int):
        r = np.random.default_rng([seed, salt])

        def gen(epoch: int):
            for _ in range(steps):
                yield [learn[int(i)] for i in r.choice(len(learn), size=per, replace=len(learn) < per)]
        return gen

    end = min(deadline, t0 + config.seconds) if config.seconds is not None else deadline
    head_steps = int(round(config.steps * config.head_share))
    batch_rng = np.random.default_rng([seed, 7])
    reports: list[dict[str, Any]] = []
    start_loss = None
    for name, steps, lr, frozen in (("head", head_steps, config.head_lr, True),
                                    ("encoder", config.steps - head_steps, config.lr, False)):
        if steps < 1:
            continue
        encoder.requires_grad_(not frozen)
        cfg = LoopConfig(lr=lr, warmup_steps=min(50, max(steps // 10, 1)), eval_every=max(steps // config.evals, 1),
                         patience=10**6, seed=None, eval_at_start=True)
        evaluator = DevEvaluator(held_loss, "mlm_loss", greater_is_better=False)
        result = train(net, [Phase(name, batches_for(steps, len(reports)), steps, 1, early_stop=False)], loss_of,
                       evaluator, end, cfg, device, progress, description=f"post-training ({name})")
        start_loss = result.baseline if start_loss is None else start_loss
        reports.append({"phase": name, "steps": result.steps, "best_step": result.best_step,
                        "held_out_loss": round(result.best, 4), "stopped_by_budget": result.stopped_by_budget})
    encoder.requires_grad_(True)
    encoder.eval()
    return {"texts": len(learn), "held_out_texts": len(held), "start_held_out_loss": round(float(start_loss or 0), 4),
            "phases": reports, "steps": sum(r["steps"] for r in reports), "config": asdict(config),
            "head": "new (identity dense + layer norm), decoder tied to the word embeddings; discarded after",
            "seconds": round(time.monotonic() - t0, 1)}


def domain_texts(index_path: Path, queries: Iterable[str], limit: int, rng: np.random.Generator,
                 doc_share: float = 0.7) -> list[str]:
    """Up to `limit` texts of the index: a seeded sample of its documents (title and text joined; `doc_share`
    of the texts), the given (train) queries and the searches of its event log when it has one."""
    from souk.index import Index
    from souk.training.data import DocTexts

    searcher = Index.open(index_path).searcher()
    ids = searcher.ids()
    n_docs = min(len(ids), int(limit * doc_share))
    picked = [ids[int(i)] for i in rng.choice(len(ids), size=n_docs, replace=False)] if n_docs else []
    docs = [" ".join(p for p in d if p) for d in DocTexts(searcher).get(picked)]
    said = list(dict.fromkeys([*queries, *logged_queries(index_path, limit)]))
    rng.shuffle(said)
    return docs + said[:max(limit - len(docs), 0)]


def logged_queries(index_path: Path, limit: int) -> list[str]:
    """The distinct query strings of the index's event log (searches), at most `limit`; none without a log."""
    from souk.events.log import DIRNAME, event_log

    if not (Path(index_path) / DIRNAME).is_dir():
        return []
    seen: dict[str, None] = {}
    for record in event_log(index_path).read(kinds=("search",)):
        query = record.get("query")
        if isinstance(query, str) and query.strip():
            seen[query.strip()] = None
            if len(seen) >= limit:
                break
    return list(seen)


SHARE = 0.25  # at most this share of a stage's remaining budget goes to post-training


def post_train_for(job: Any, encoder: Any, model_dir: Path, steps: int) -> dict[str, Any]:
    """A fitter's post-training step (`bi.mlm`, `cross.mlm`): `steps` MLM steps on the index's own text within
    `SHARE` of the stage's time left; `encoder` changes in place. Returns the manifest's `mlm` report."""
    config = MlmConfig(steps=int(steps), seconds=SHARE * max(job.seconds_left, 0.0))
    rng = np.random.default_rng([job.seed, 11])
    texts = domain_texts(job.index_path, job.train.queries.values(), config.steps * config.batch_size + 256, rng)
    from souk.index import Index

    user_dict = Index.open(job.index_path).schema.analysis.get("user_dict")
    return post_train(encoder, Path(model_dir) / "tokenizer.json", texts, config, job.deadline, job.seed, job.device,
                      job.progress, user_dict)
