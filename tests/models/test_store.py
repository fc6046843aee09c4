"""Versioned model directories: publish, activate, list; interrupted fits leave the active model alone."""
import os

import pytest

from souk.errors import ModelError
from souk.models.store import ModelStore, read_model_manifest


def test_publish_versions_and_switches_active(tmp_path):
    store = ModelStore(tmp_path)
    first = store.publish("ltr", store.new("ltr"), {"kind": "ltr", "dev": {"ndcg@10": 0.4}})
    second = store.publish("ltr", store.new("ltr"), {"kind": "ltr", "dev": {"ndcg@10": 0.5}})
    assert (first.name, second.name) == ("ltr-1", "ltr-2")
    assert store.active("ltr") == second
    store.activate("ltr-1")
    assert store.active("ltr") == first
    assert [(m["name"], m["active"]) for m in store.list()] == [("ltr-1", True), ("ltr-2", False)]
    assert read_model_manifest(first, kind="ltr")["dev"] == {"ndcg@10": 0.4}
    with pytest.raises(ModelError, match="holds a 'ltr' model, not a 'cross' model"):
        read_model_manifest(first, kind="cross")
    with pytest.raises(ModelError, match="no model 'ltr-9'"):
        store.activate("ltr-9")


def test_inactive_publish_and_unfitted_stage(tmp_path):
    store = ModelStore(tmp_path)
    assert store.active("cross") is None
    store.publish("cross", store.new("cross"), {"kind": "cross"}, activate=False)
    assert store.active("cross") is None


def test_stale_workdirs_of_dead_fits_are_cleaned(tmp_path):
    store = ModelStore(tmp_path)
    live = store.new("ltr")
    dead = store.root / ".tmp-ltr-999999999-abc"
    dead.mkdir()
    assert store.clean() == 1
    assert live.exists() and not dead.exists()
    assert os.listdir(store.root) == [live.name]
