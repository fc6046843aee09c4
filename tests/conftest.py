"""Shared fixtures: small real indexes built from the fixtures and the shipped demo catalog."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import FIXTURES, REPO, run_souk


@pytest.fixture(scope="session")
def product_index(tmp_path_factory) -> Path:
    """The tiny bilingual product fixture, indexed with an inferred schema."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import infer_schema

    path = tmp_path_factory.mktemp("products") / "index"
    records = list(read_catalog(FIXTURES / "products.jsonl"))
    schema = infer_schema([r.data for r in records])
    index = Index.create(path, schema)
    with index.writer() as w:
        w.add(records)
        w.commit()
    return path


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory) -> Path:
    """The shipped demo catalog indexed with its schema."""
    path = tmp_path_factory.mktemp("demo") / "index"
    run_souk("index", str(REPO / "souk/demo/pricewatch.json"), "--index", str(path), "--schema", str(REPO / "souk/demo/pricewatch.toml"))
    return path


@pytest.fixture
def copy_fixture(tmp_path):
    def _copy(name: str) -> Path:
        dst = tmp_path / name
        src = FIXTURES / name
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def tiny_cross(tmp_path_factory) -> dict:
    """A tiny BERT cross-encoder fitted on a synthetic collection (see tests/tiny_bert.py)."""
    from tiny_bert import tiny_fitted_index

    return tiny_fitted_index(tmp_path_factory.mktemp("cross"))
