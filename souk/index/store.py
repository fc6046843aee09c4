"""How a souk schema maps onto tantivy fields (the on-disk layout of the keyword index).

| souk field kind | tantivy field                                              |
|-----------------|------------------------------------------------------------|
| (every doc)     | `__id` raw text, stored + fast; `__key` i64 fast; `__source` stored JSON bytes |
| text            | analyzed terms joined by spaces, whitespace tokenizer, positions |
| keyword         | raw text, fast (filters, facets), multi-valued              |
| number          | f64 indexed + fast (range filters, sort, features)          |
| vector          | stored float32 bytes (the FAISS cache is rebuilt from them) |

souk analyzes text itself (jieba, stemming, OpenCC) and hands tantivy finished terms, so index and
query always share one chain.
"""
from __future__ import annotations

from pathlib import Path

import tantivy

from souk.errors import IndexStateError
from souk.schema import Schema

ID, KEY, SOURCE = "__id", "__key", "__source"
TERMS_TOKENIZER = "whitespace"


def tantivy_schema(schema: Schema) -> tantivy.Schema:
    """The tantivy schema for a souk schema."""
    sb = tantivy.SchemaBuilder()
    sb.add_text_field(ID, stored=True, tokenizer_name="raw", fast=True)
    sb.add_integer_field(KEY, stored=False, indexed=True, fast=True)
    sb.add_bytes_field(SOURCE, stored=True)
    for f in schema.fields.values():
        if f.kind == "text":
            sb.add_text_field(f.name, stored=False, tokenizer_name=TERMS_TOKENIZER, index_option="position")
        elif f.kind == "keyword":
            sb.add_text_field(f.name, stored=False, tokenizer_name="raw", fast=True)
        elif f.kind == "number":
            sb.add_float_field(f.name, stored=False, indexed=True, fast=True)
        elif f.kind == "vector":
            sb.add_bytes_field(f.name, stored=True)
    return sb.build()


def open_tantivy(path: Path, schema: Schema, create: bool = False) -> tantivy.Index:
    """Open (or create) the tantivy index under `path/keyword`."""
    kdir = path / "keyword"
    if create:
        kdir.mkdir(parents=True, exist_ok=True)
        return tantivy.Index(tantivy_schema(schema), path=str(kdir), reuse=False)
    if not tantivy.Index.exists(str(kdir)):
        raise IndexStateError(f"{path}: keyword index missing under {kdir}; the index was never committed or was damaged")
    try:
        return tantivy.Index.open(str(kdir))
    except ValueError as e:
        raise IndexStateError(f"{path}: cannot open keyword index: {e}") from e


def meta_path(path: Path) -> Path:
    """tantivy's commit point: rewritten atomically on each commit."""
    return path / "keyword" / "meta.json"
