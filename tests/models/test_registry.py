"""Models by registered name and by directory, described alike; what each reads comes from its manifest."""
import json
import shutil

import pytest

from souk.errors import ModelError
from souk.models import MODEL_MANIFEST, model_card, model_names, text_coverage, write_model_manifest


def test_the_bundled_minilm_is_registered_and_reads_no_chinese():
    card = model_card("all-MiniLM-L6-v2")
    assert "all-MiniLM-L6-v2" in model_names()
    assert (card.kind, card.dim, card.reads_han, card.name) == ("bi-encoder", 384, False, "all-MiniLM-L6-v2")
    assert (card.path / "tokenizer.json").is_file()


def test_text_coverage_counts_han_for_an_english_only_model():
    assert text_coverage("all-MiniLM-L6-v2", "running shoes") == 1.0
    assert text_coverage("all-MiniLM-L6-v2", "跑步鞋") == 0.0
    assert text_coverage("all-MiniLM-L6-v2", "ab 跑步") == 0.5
    assert text_coverage("all-MiniLM-L6-v2", "  ") == 1.0


def test_a_directory_loads_by_path_with_what_its_manifest_says(tiny_encoder, tiny_english_encoder, tiny_cross_encoder):
    card = model_card(tiny_encoder)
    assert (card.kind, card.dim, card.reads_han, card.name) == ("bi-encoder", 32, True, str(tiny_encoder.resolve()))
    assert model_card(str(tiny_encoder)) == card
    assert (
        text_coverage(str(tiny_encoder), "跑步鞋") == 1.0 and text_coverage(str(tiny_english_encoder), "跑步鞋") == 0.0
    )
    assert model_card(tiny_cross_encoder).kind == "cross-encoder"


def test_a_folder_without_manifest_takes_its_kind_from_config(tiny_encoder, tiny_cross_encoder, tmp_path):
    for src, kind in ((tiny_encoder, "bi-encoder"), (tiny_cross_encoder, "cross-encoder")):
        bare = shutil.copytree(src, tmp_path / src.name)
        (bare / MODEL_MANIFEST).unlink()
        card = model_card(bare)
        assert card.kind == kind and card.reads_han is True  # nothing says otherwise


def test_sentence_transformers_folders_load_only_when_souk_pools_the_same_way(tiny_encoder, tmp_path):
    st = shutil.copytree(tiny_encoder, tmp_path / "st")
    (st / "1_Pooling").mkdir()
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
    (st / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert model_card(st).dim == 32
    (st / "1_Pooling" / "config.json").write_text(json.dumps({**pooling, "pooling_mode_cls_token": True,
                                                              "pooling_mode_mean_tokens": False}))
    with pytest.raises(ModelError, match="pooling"):
        model_card(st)


def test_a_changed_model_gets_a_new_version(tiny_encoder, tmp_path):
    copy = shutil.copytree(tiny_encoder, tmp_path / "copy")
    before = model_card(copy).version
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes() + b"\0")
    assert model_card(copy).version != before


@pytest.mark.parametrize("break_it, message", [
    (lambda p: (p / "tokenizer.json").unlink(), "tokenizer.json"),
    (lambda p: (p / "config.json").unlink(), "config.json"),
    (lambda p: write_model_manifest(p, "bi-encoder", reads_han=True)
     and (p / MODEL_MANIFEST).write_text('{"kind": "ranker"}'), "ranker"),
])
def test_broken_directories_say_what_is_wrong(break_it, message, tiny_encoder, tmp_path):
    copy = shutil.copytree(tiny_encoder, tmp_path / "copy")
    break_it(copy)
    with pytest.raises(ModelError, match=message):
        model_card(copy)


def test_unknown_names_list_what_is_known(tmp_path):
    with pytest.raises(ModelError, match="all-MiniLM-L6-v2"):
        model_card("bert-huge")
    with pytest.raises(ModelError, match="kind"):
        write_model_manifest(tmp_path, "ranker", reads_han=True)
