"""Fixtures for the query tests: a bilingual catalog with the products shoppers misspell."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import FIXTURES


@pytest.fixture(scope="session")
def spell_index(tmp_path_factory) -> Path:
    """tests/fixtures/spell_products.jsonl indexed with an inferred schema (brand is a keyword field)."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import infer_schema

    path = tmp_path_factory.mktemp("spell") / "index"
    records = list(read_catalog(FIXTURES / "spell_products.jsonl"))
    index = Index.create(path, infer_schema([r.data for r in records]))
    with index.writer() as writer:
        writer.add(records)
        writer.commit()
    return path


@pytest.fixture(scope="session")
def spell_searcher(spell_index: Path):
    from souk.index import Index

    return Index.open(spell_index).searcher()


@pytest.fixture(scope="session")
def speller(spell_searcher):
    from souk.query.lexicon import load_lexicon
    from souk.query.spell import Speller

    return Speller(load_lexicon(spell_searcher))
