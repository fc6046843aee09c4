"""Fitter `words` (`souk.training.words`): new words mined from short queries and catalog n-grams that jieba
splits, published as a list and applied by re-analyzing the index (the manifest versions it)."""
from __future__ import annotations

import json

import numpy as np

from souk.training.words import DEFAULTS, jieba_splits, mine

BEFORE = ["新款", "防摔", "透明", "超薄", "磨砂", "硅胶", "卡通", "男款"]
AFTER = ["包邮", "特价", "正品", "促销", "批发", "定制", "现货", "热卖"]


def catalog(n: int = 64, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(BEFORE)}手机壳{rng.choice(AFTER)}" if i % 2 else f"{rng.choice(BEFORE)}{rng.choice(AFTER)}"
            for i in range(n)]


def test_a_word_jieba_splits_is_mined_from_the_catalog_and_the_queries():
    assert jieba_splits("手机壳") and not jieba_splits("手机")
    mined, report = mine(catalog(), ["手机壳", "手机壳", "蓝牙耳机"], {**DEFAULTS, "min_docs": 5})
    words = dict(mined)
    assert "手机壳" in words and "手机" not in words and "新款" not in words
    assert words["手机壳"] == 100 * (32 + 2)  # 100 per document or query it was seen in
    assert report["from_queries"] == 1 and report["short_queries"] == 2
    # from the catalog alone
    mined, report = mine(catalog(), [], {**DEFAULTS, "min_docs": 5, "min_pmi": 0.5})  # its characters: only in it
    assert "手机壳" in dict(mined) and report["from_queries"] == 0


def _collection(root):
    root.mkdir()
    docs = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(catalog())]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    queries = [{"_id": f"q{i}", "text": "手机壳" if i < 3 else docs[i]["text"]} for i in range(12)]
    (root / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                              + "".join(f"q{i}\td{i if i >= 3 else 1}\t1\n" for i in range(12)))
    return root


def test_the_fitter_applies_its_words_only_when_asked(tmp_path):
    from souk.evaluation.datasets import load_beir
    from souk.index import Index
    from souk.analysis.registry import get_analyzer
    from souk.training.fit import fit
    from zh_mini import build_index

    data = _collection(tmp_path / "beir")
    path = tmp_path / "index"
    build_index(path, data)
    train = load_beir(data, "train")
    [off] = fit(path, train, None, ["words"], budget_s=60, progress=False)
    assert off.manifest["active"] is False and "words" not in Index.open(path).manifest
    [on] = fit(path, train, None, ["words"], budget_s=60, progress=False,
               options={"words": {"new_words": True, "min_docs": 5}})
    assert on.manifest["active"] is True and "手机壳" in on.manifest["sample"]
    assert on.manifest["activation"]["version"] == 1 and on.manifest["activation"]["docs"] == 64
    index = Index.open(path)
    assert index.manifest["words"]["count"] == on.manifest["words"]

    assert "手机壳" in get_analyzer("standard", index.schema.analysis["user_dict"]).terms("磨砂手机壳")
