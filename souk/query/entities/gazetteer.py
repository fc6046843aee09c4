"""The gazetteer: known catalog values (brands, categories, ...) found in query text.

Built from keyword fields of an index (plus user aliases such as 可口可乐 -> Coca-Cola), it finds
the leftmost-longest, non-overlapping occurrences of those values in a query. Comparison is on the
canonical form of `souk.query.entities.text` (NFKC, case, traditional -> simplified, punctuation as
space), so `COCA-COLA`, `coca cola` and `可口可樂` all match. Latin letters and digits must match
whole words (`apple` is not found in `pineapple`); Han characters match at any position.
Misuse: keyword fields with free text (titles, descriptions) in a gazetteer; every word matches.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from souk.errors import ConfigError
from souk.query.entities.entity import Entity
from souk.query.entities.text import canonical, canonical_with_offsets, is_word_char

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

KIND = "gazetteer"
FORMAT = 1
_END = ""  # trie key holding the (type, value) pairs of a complete entry


class Gazetteer:
    """Values by type, matched in query text; `entries` are (surface, type, value) triples.

    A surface shorter than `min_chars` canonical characters, or without any letter, is skipped (a
    one-letter brand or a bare number would match nearly every query). One surface may carry
    several (type, value) pairs (`Apple` as brand and as category); `match` reports each of them
    on the same span, in the order they were added.
    """

    def __init__(self, entries: Iterable[tuple[str, str, str]] = (), min_chars: int = 2):
        self.min_chars = min_chars
        self._entries: list[tuple[str, str, str]] = []
        self._trie: Any = {}  # nested dicts: character -> node
        for surface, kind, value in entries:
            self.add(surface, kind, value)

    def add(self, surface: str, kind: str, value: str) -> bool:
        """Add one entry; False when its surface is too short or has no letter to match on."""
        key = canonical(surface)
        if len(key) < self.min_chars or not any(c.isalpha() for c in key):
            return False
        node = self._trie
        for c in key:
            node = node.setdefault(c, {})
        pairs = node.setdefault(_END, [])
        if (kind, value) not in pairs:
            pairs.append((kind, value))
            self._entries.append((surface, kind, value))
        return True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def types(self) -> list[str]:
        return list(dict.fromkeys(kind for _, kind, _ in self._entries))

    # ---- building ----------------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: Mapping[str, Iterable[str]], aliases: Mapping[str, str] | None = None,
                    min_chars: int = 2) -> "Gazetteer":
        """From {type: values}; each alias (surface -> existing value) gets that value's types."""
        gazetteer = cls(((v, kind, v) for kind, vs in values.items() for v in vs), min_chars=min_chars)
        for alias, target in (aliases or {}).items():
            pairs = gazetteer._pairs_of(target)
            if not pairs:
                raise ConfigError(f"alias {alias!r} -> {target!r}: {target!r} is no value of "
                                  f"{', '.join(values) or 'any type'}; alias an existing value")
            for kind, value in pairs:
                gazetteer.add(alias, kind, value)
        return gazetteer

    @classmethod
    def from_index(cls, searcher: "Searcher", fields: Sequence[str] | None = None,
                   aliases: Mapping[str, str] | None = None, max_values: int = 100_000,
                   min_chars: int = 2) -> "Gazetteer":
        """From every value of the keyword `fields` of an index snapshot (types are the field names;
        default: the keyword fields named like brand/category, see `documents.entity_fields`), read
        with one terms aggregation per field; warns when a field has more than `max_values` values."""
        from souk.index.searcher import SearchRequest
        from souk.query.documents import entity_fields

        schema = searcher.schema
        if fields is None:
            fields = [n for n in entity_fields(schema) if schema.fields[n].kind == "keyword"]
        for name in fields:
            schema.field(name, kinds=("keyword",))
        facets = searcher.search(SearchRequest(query="", k=0, facets=list(fields), facet_size=max_values,
                                               highlight=False)).facets
        values: dict[str, list[str]] = {}
        for name in fields:
            facet = facets[name]
            if facet.get("other"):
                warnings.warn(f"field {name!r} has more than {max_values} values; the gazetteer keeps "
                              f"the {max_values} most frequent", stacklevel=2)
            values[name] = [str(key) for key, _ in facet["buckets"]]
        return cls.from_values(values, aliases, min_chars=min_chars)

    def _pairs_of(self, value: str) -> list[tuple[str, str]]:
        exact = [(kind, v) for _, kind, v in self._entries if v == value]
        if exact:
            return list(dict.fromkeys(exact))
        key = canonical(value)
        return list(dict.fromkeys((kind, v) for s, kind, v in self._entries if canonical(s) == key))

    # ---- matching ----------------------------------------------------------------------------
    def match(self, text: str) -> list[Entity]:
        """Leftmost-longest, non-overlapping entries in `text`, with spans into `text`."""
        norm, offsets = canonical_with_offsets(text)
        found: list[Entity] = []
        i, n = 0, len(norm)
        while i < n:
            if i and is_word_char(norm[i]) and is_word_char(norm[i - 1]):
                i += 1  # inside a Latin word: no entry starts here
                continue
            node, j, best = self._trie, i, None
            while j < n and (node := node.get(norm[j])) is not None:
                j += 1
                if _END in node and not (j < n and is_word_char(norm[j - 1]) and is_word_char(norm[j])):
                    best = (j, node[_END])
            if best is None:
                i += 1
                continue
            j, pairs = best
            start, end = offsets[i], offsets[j - 1] + 1
            found.extend(Entity(type=kind, text=text[start:end], value=value, start=start, end=end, source="gazetteer")
                         for kind, value in pairs)
            i = j
        return found

    # ---- save / load -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the entries as JSON (the trie is rebuilt on load)."""
        path = Path(path)
        data = {"kind": KIND, "format": FORMAT, "min_chars": self.min_chars,
                "entries": [list(e) for e in self._entries]}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Gazetteer":
        """Read a gazetteer written by `save`; refuses other JSON with a clear error."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such gazetteer file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a gazetteer JSON file ({e})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND or data.get("format") != FORMAT:
            raise ConfigError(f"{path}: not a souk gazetteer (kind {KIND!r}, format {FORMAT})")
        return cls((tuple(e) for e in data["entries"]), min_chars=data.get("min_chars", 2))
