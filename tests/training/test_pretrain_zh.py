"""Pre-training the Chinese stages on the corpus before fine-tuning: `wordvec.pretrain` (a masked whole jieba
word found from the rest of its sentence) and `interact.pretrain` (pseudo-queries of whole words of a document)."""
from __future__ import annotations

import random

import pytest

from souk.training.wordvec import masked_pairs


def test_a_masked_pair_cuts_one_whole_word_out():
    pairs = masked_pairs(["小孩感冒咳嗽吃什么药好", "药", "宝宝咳嗽有痰怎么护理"], 10, random.Random(0))
    assert len(pairs) == 2  # a sentence of one character has nothing to mask
    for context, word in pairs:
        assert len(word) >= 2 and " " in context and context.replace(" ", word, 1) in {"小孩感冒咳嗽吃什么药好",
                                                                                    "宝宝咳嗽有痰怎么护理"}


def test_pseudo_queries_are_consecutive_whole_words_of_their_document(tmp_path):
    from souk.analysis.tokenize import han_segments
    from souk.training.interact import pseudo_queries
    from zh_mini import build_index

    searcher = build_index(tmp_path / "index").searcher()
    found = pseudo_queries(searcher, 20, random.Random(1))
    assert 10 <= len(found) <= 20
    for doc_id, query in found.items():
        text = searcher.docs([doc_id])[0]["text"]
        assert query in text and 2 <= len(list(han_segments(query))) <= 4


@pytest.mark.slow
def test_both_pretrain_options_run_and_report(tmp_path):
    from zh_mini import FAST, build_index, fit_fast

    build_index(tmp_path / "index")
    options = {"wordvec": {**FAST["wordvec"], "pretrain": True, "pretrain_pairs": 200},
               "interact": {**FAST["interact"], "pretrain": True, "pretrain_queries": 40}}
    wordvec, interact = fit_fast(tmp_path / "index", options=options)
    pre = wordvec.manifest["pretrain"]
    assert pre["pairs"] > 40 and pre["steps"] > 0 and pre["held_out_loss"] < pre["start_held_out_loss"]
    assert interact.manifest["pretrain"]["pseudo_queries"] > 10
    assert interact.manifest["dev"]["ndcg@10"] >= interact.manifest["dev"]["recall_ndcg@10"]
