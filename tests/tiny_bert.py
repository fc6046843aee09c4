"""A tiny random-weight BERT with a WordPiece vocabulary built from fixture text, and a synthetic
BEIR collection it can learn in seconds (query "tN colour" -> the document titled "tN colour").

Importable from every test module (`from tiny_bert import ...`); nothing here loads a real model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
COLOURS = ["red", "blue", "green"]
FILLER = "the a of and with for kit set new pack item tool home part light metal wood".split()


def topic_collection(root: Path, topics: int = 48, seed: int = 0) -> Path:
    """A BEIR directory: a document per (topic, colour), a query per document, qrels train/dev."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    docs, queries, qrels = [], [], {"train": [], "dev": []}
    for t in range(topics):
        for c in COLOURS:
            doc_id = f"d{t}{c}"
            text = " ".join(rng.choice(FILLER, size=8).tolist())
            docs.append({"_id": doc_id, "title": f"t{t} {c}", "text": text})
            qid = f"q{t}{c}"
            queries.append({"_id": qid, "text": f"t{t} {c}"})
            qrels["dev" if t % 4 == 0 else "train"].append((qid, doc_id))
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                     + "".join(f"{q}\t{d}\t1\n" for q, d in rows))
    return root


def tiny_tokenizer(folder: Path, texts: list[str]) -> int:
    """Save a WordPiece tokenizer (tokenizer.json, vocab.txt) over the words of `texts`; returns its size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in t.lower().split()})
    vocab = {w: i for i, w in enumerate(SPECIAL + words)}
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True,
                                                              "model_max_length": 128}))
    return len(vocab)


def tiny_bert(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """Save a random 2-layer BERT (hidden 32) and a WordPiece tokenizer over the words of `texts`."""
    import torch
    from transformers import BertConfig, BertModel

    size = tiny_tokenizer(folder, texts)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.1)
    BertModel(config).save_pretrained(str(folder))
    return folder


def collection_texts(root: Path) -> list[str]:
    lines = [json.loads(x) for x in (root / "corpus.jsonl").read_text().splitlines()]
    return [d["title"] + " " + d["text"] for d in lines] + FILLER


def pipelines_schema() -> dict:
    """The BEIR schema with every neural preset recalling by BM25 alone (no MiniLM in these tests)."""
    from souk.schema import beir_schema

    data = beir_schema().to_dict()
    data["pipelines"] = {"rerank": {"retrievers": ["bm25"]},
                         "full": {"stages": [{"stage": "recall", "retrievers": ["bm25"]},
                                             {"stage": "cross", "depth": 20, "optional": True}]}}
    return data


FIT_OPTIONS = {"weak_groups": 48, "max_length": 64, "query_length": 8, "title_length": 16, "lr": 5e-4,
               "eval_every": 25, "epochs": 12, "patience": 10, "eval_start": True, "dev_max": 100}


def tiny_fitted_index(root: Path) -> dict:
    """The topic collection indexed (BM25 recall for the neural presets), a tiny base model, and one
    `cross` fit on its train split (dev for early stopping): paths and the fit outcome."""
    from souk.catalogs import read_catalog
    from souk.evaluation.datasets import load_beir
    from souk.index import Index
    from souk.schema import Schema
    from souk.training.fit import fit

    coll = topic_collection(root / "beir", seed=2)
    base = tiny_bert(root / "base", collection_texts(coll))
    index = Index.create(root / "index", Schema.from_dict(pipelines_schema(), origin="tiny"))
    with index.writer() as w:
        w.add(read_catalog(coll))
        w.commit()
    train, dev = load_beir(coll, "train"), load_beir(coll, "dev")
    [outcome] = fit(root / "index", train, dev, ["cross"], budget_s=120, progress=False,
                    options={"cross": {**FIT_OPTIONS, "base": str(base)}})
    return {"collection": coll, "base": base, "index": root / "index", "outcome": outcome, "train": train, "dev": dev}
