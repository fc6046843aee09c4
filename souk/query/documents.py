"""Which texts of an index do query-side resources (suggestions, mined synonyms) learn from?

Reads every stored document of one searcher snapshot once, when such a resource is built; never per
query. Misuse: calling `field_values` on a hot path (it fetches every stored document).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterator, Sequence

from souk.errors import ConfigError
from souk.index.store import SOURCE
from souk.schema import KEYWORD_HINTS, Schema

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

TITLE_HINTS = ("title", "name")
_STRING_KINDS = ("text", "keyword", "stored")


def title_fields(schema: Schema) -> list[str]:
    """Fields that hold product titles: text or stored fields named like `title`/`name`, else the
    search fields (copy fields resolved to their sources)."""
    own = [f.name for f in schema.fields.values() if f.kind in ("text", "stored") and not f.copy_from
           and f.name != schema.id_field and any(h in f.name.lower() for h in TITLE_HINTS)]
    if own:
        return own
    names: list[str] = []
    for name in schema.search_fields:
        for src in schema.fields[name].copy_from or [name]:
            if src not in names:
                names.append(src)
    return names[:1]


def entity_fields(schema: Schema, exclude: Sequence[str] = ()) -> list[str]:
    """Fields that name catalog entities (brand, category, ...), by the schema's keyword hints."""
    return [f.name for f in schema.fields.values()
            if f.kind in _STRING_KINDS and not f.copy_from and f.name != schema.id_field and f.name not in exclude
            and f.stored and any(h in f.name.lower() for h in KEYWORD_HINTS)]


def check_fields(schema: Schema, names: Sequence[str]) -> list[str]:
    """The names, checked to be stored string fields (copy fields have no stored value of their own)."""
    for name in names:
        f = schema.field(name, kinds=_STRING_KINDS)
        if f.copy_from:
            raise ConfigError(f"field {name!r} copies {', '.join(f.copy_from)}; name those fields instead")
        if not f.stored:
            raise ConfigError(f"field {name!r} is not stored, so its values cannot be read back")
    return list(names)


def field_values(searcher: "Searcher", fields: Sequence[str]) -> Iterator[dict[str, list[str]]]:
    """For every live document, the string values of `fields` (a list per field, empty when absent)."""
    check_fields(searcher.schema, fields)
    _, raw = searcher.stored_bytes(SOURCE)
    for blob in raw:
        source = json.loads(blob) if blob else {}
        out: dict[str, list[str]] = {}
        for name in fields:
            value = source.get(name)
            values = value if isinstance(value, list) else [] if value is None else [value]
            out[name] = [str(v) for v in values if str(v).strip()]
        yield out
