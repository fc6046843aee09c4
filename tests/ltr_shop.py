"""The generated tool shop of tests/fixtures/ltr-shop (100 products, 45 train and 15 dev queries), indexed."""
from __future__ import annotations

from pathlib import Path

from support import FIXTURES

SHOP = FIXTURES / "ltr-shop"


def shop_index(path: Path) -> Path:
    """Index the shop into `path` (no vectors: the `ltr` preset then recalls with BM25 alone)."""
    from souk.catalogs import read_catalog
    from souk.index import Index
    from souk.schema import Schema

    index = Index.create(path, Schema.load(SHOP / "schema.toml"))
    with index.writer() as w:
        w.add(read_catalog(SHOP / "corpus.jsonl"))
        w.commit()
    return path
