"""Tiny random-weight models for tests: real BERTs (hidden 32, 2 layers, a WordPiece vocab learnt from the
fixture texts) saved as model directories, so tests load them through the registry like any model.

Their vectors mean nothing, but they are deterministic, and every code path (tokenizer, forward, pooling,
backends, caches) is the real one. Tests of quality keep the real MiniLM (marked slow).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from support import FIXTURES

HIDDEN, LAYERS, VOCAB = 32, 2, 400


def fixture_words() -> list[str]:
    """Words of the fixture catalogs (English and Chinese), in file order."""
    words: list[str] = []
    for line in (FIXTURES / "beir-mini" / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        words += f"{d['title']} {d['text']}".split()
    for line in (FIXTURES / "products.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        words += f"{d.get('title', '')} {d.get('title_zh', '')}".split()
    return words


def synthetic_texts(n: int, seed: int = 0, lo: int = 6, hi: int = 20) -> list[str]:
    """`n` distinct texts of fixture words (seeded)."""
    words, rng, out = fixture_words(), random.Random(seed), []
    while len(out) < n:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))
        if text not in out:
            out.append(text)
    return out


def write_tiny_bert(path: Path, kind: str = "bi-encoder", reads_han: bool = True, seed: int = 0) -> Path:
    """Save a random-weight tiny BERT (a `BertModel`, or a one-logit sequence classifier for
    `kind="cross-encoder"`) with its tokenizer and a souk manifest into `path`."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from souk.models.backends import quiet_transformers
    from souk.models.registry import write_model_manifest

    quiet_transformers()
    path.mkdir(parents=True, exist_ok=True)
    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(fixture_words(), vocab_size=VOCAB, min_frequency=1, show_progress=False)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(str(path / "tokenizer.json"))
    tok.save_model(str(path))
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=2,
                        intermediate_size=2 * HIDDEN, max_position_embeddings=512, num_labels=1)
    torch.manual_seed(seed)
    net = BertForSequenceClassification(config) if kind == "cross-encoder" else BertModel(config)
    net.eval().save_pretrained(str(path))
    write_model_manifest(path, kind, reads_han, base="random tiny BERT (tests)", created="fixture")
    return path


def vector_index(tmp_path, model, n, **params):
    """An index of `n` synthetic BEIR docs (ids doc0..) with a vector field on the given model directory."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import Schema

    beir = tmp_path / "beir"
    beir.mkdir()
    docs = [{"_id": f"doc{i}", "title": t.split()[0], "text": t} for i, t in enumerate(synthetic_texts(n))]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                                       encoding="utf-8")
    schema = Schema.from_dict({"id": "_id", "fields": {
        "_id": {"kind": "keyword"}, "title": {"kind": "stored"}, "text": {"kind": "stored"},
        "all": {"kind": "text", "copy_from": ["title", "text"]},
        "embedding": {"kind": "vector",
                      "params": {"source": ["title", "text"], "model": str(model), "backend": "torch-fp32",
                                 **params}}}})
    index = Index.create(tmp_path / "index", schema)
    with index.writer() as w:
        w.add(read_catalog(beir))
        w.commit()
    return index
