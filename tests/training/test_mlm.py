"""Domain post-training (`souk.training.mlm`) on a tiny random BERT: whole-word masks (WordPiece pieces and
jieba words together), a held-out masked loss that falls, the encoder changed in place, and `cross.mlm` in a fit."""
from __future__ import annotations

import time

import numpy as np
import pytest

from souk.training.mlm import IGNORE, Masker, MlmConfig, domain_texts, logged_queries, post_train, word_groups
from tiny_bert import FIT_OPTIONS, collection_texts, tiny_bert, tiny_tokenizer


def test_a_jieba_word_is_one_group_and_pieces_join_their_word(tmp_path):
    from tokenizers import Tokenizer

    tiny_tokenizer(tmp_path, ["kit set 我 们 喜 欢 手 机"])
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "kit 我们喜欢手机"
    e = tok.encode(text)
    groups = word_groups(text, e.offsets, e.word_ids, e.special_tokens_mask)
    by_token = dict(zip(e.tokens, groups))
    assert groups[0] == -1 and groups[-1] == -1  # [CLS], [SEP]
    assert by_token["我"] == by_token["们"] != by_token["kit"]  # jieba: 我们 | 喜欢 | 手机
    assert by_token["喜"] == by_token["欢"] != by_token["手"] == by_token["机"] != by_token["我"]
    # a word cut into WordPiece pieces is one group
    groups = word_groups("kitset", [(0, 0), (0, 3), (3, 6), (0, 0)], [None, 0, 0, None], [1, 0, 0, 1])
    assert groups == [-1, 0, 0, -1]


def test_masks_cover_whole_words_only(tmp_path):
    tiny_tokenizer(tmp_path, ["kit set 我 们 喜 欢 手 机 new pack"])
    masker = Masker(tmp_path / "tokenizer.json", 32, 0.4)
    text = "我们喜欢手机"
    ids, attention, labels = masker.batch([text] * 20, np.random.default_rng(0))
    assert ids.shape == labels.shape == attention.shape
    for row in labels:
        hit = (row[1:7] != IGNORE).tolist()  # tokens 我 们 | 喜 欢 | 手 机
        assert all(hit[i] == hit[i + 1] for i in (0, 2, 4)) and any(hit) and not all(hit)
    assert (ids == masker.mask_id).any()


@pytest.mark.slow
def test_post_training_lowers_the_held_out_masked_loss(tmp_path):
    import torch
    from transformers import AutoModel

    texts = [f"t{i % 7} {c} kit set of new pack item {c} tool" for i in range(200) for c in ("red", "blue")]
    base = tiny_bert(tmp_path / "base", texts)
    net = AutoModel.from_pretrained(str(base))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = post_train(net, base / "tokenizer.json", texts,
                        MlmConfig(steps=30, batch_size=8, max_length=24, lr=2e-3, head_lr=2e-2, evals=1, held_out=16),
                        time.monotonic() + 600)
    assert report["steps"] == 30 and [p["phase"] for p in report["phases"]] == ["head", "encoder"]
    assert report["phases"][-1]["held_out_loss"] < report["start_held_out_loss"] - 0.3, report
    after = net.state_dict()
    assert set(after) == set(before)  # no head left on the encoder
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in net.parameters())


def test_too_little_text_is_skipped(tmp_path):
    from transformers import AutoModel

    base = tiny_bert(tmp_path / "base", ["a b c"])
    report = post_train(AutoModel.from_pretrained(str(base)), base / "tokenizer.json", ["a b"] * 3, MlmConfig(),
                        time.monotonic() + 10)
    assert report["steps"] == 0 and "skipped" in report["note"]


def test_domain_texts_are_documents_and_train_queries(tiny_cross):
    logged = logged_queries(tiny_cross["index"], 40)  # the fixture's index is shared: other tests may search it
    texts = domain_texts(tiny_cross["index"], ["only train query"], 40, np.random.default_rng(0))
    assert len(texts) == 28 + len({"only train query", *logged})  # 70% documents, then the queries there are
    assert all(t.startswith("t") for t in texts[:28]) and "only train query" in texts[28:]


@pytest.mark.slow
def test_cross_mlm_in_a_fit_reports_its_post_training(tiny_cross, tmp_path):
    import shutil

    from souk.training.fit import fit

    index = tmp_path / "index"
    shutil.copytree(tiny_cross["index"], index)
    base = tiny_bert(tmp_path / "base", collection_texts(tiny_cross["collection"]))
    [outcome] = fit(index, tiny_cross["train"], tiny_cross["dev"], ["cross"], budget_s=120, progress=False,
                    options={"cross": {**FIT_OPTIONS, "base": str(base), "epochs": 2, "weak_groups": 0,
                                       "mlm": True, "mlm_steps": 20}})
    mlm = outcome.manifest["mlm"]
    assert mlm["steps"] == 20 and mlm["phases"][-1]["held_out_loss"] <= mlm["start_held_out_loss"]
    assert outcome.manifest["params"]["mlm"] is True
