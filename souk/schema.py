"""The index config: which fields exist, how each is analyzed, searched, filtered and mapped from records.

A schema is one TOML file (validated on load; errors name the key):

    id = "code"
    [fields.title_en]
    kind = "text"            # text | keyword | number | stored | vector
    from = "name.en"         # dot path into nested records; "prices[].price" walks lists
    analyzer = "standard"    # see souk.analysis.registry
    boost = 3.0
    [fields.price]
    kind = "number"
    from = "prices[].price"
    reduce = "min"           # min | max | first | sum for lists of numbers
    feature = true           # a learned ranking feature (log and rank within the candidates)
    [search]
    fields = ["title_en", "title_zh"]   # default query fields (default: every text field)
    [pipelines.hybrid]                   # per-pipeline options or stages (souk.ranking.pipeline)
    [query]                              # query understanding steps (souk.query.understand)
"""
from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from souk.analysis.registry import analyzer_names
from souk.analysis.normalize import normalize_keyword
from souk.errors import ConfigError, SchemaError

KINDS = ("text", "keyword", "number", "stored", "vector")
REDUCERS = ("first", "min", "max", "sum", "join")
_FIELD_KEYS = {"kind", "from", "analyzer", "boost", "reduce", "copy_from", "stored", "params", "feature"}
_TOP_KEYS = {"id", "fields", "search", "analysis", "pipelines", "query"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$|^_id$")
KEYWORD_HINTS = ("brand", "category", "colour", "color", "size", "type", "tag", "vendor", "maker", "manufacturer", "supermarket", "country", "grade", "status")
ID_CANDIDATES = ("_id", "id", "code", "sku", "uniq_id", "product_id", "doc_id")


@dataclass
class Field:
    """One declared field. `source` is the dot path in the record (defaults to the name)."""

    name: str
    kind: str
    source: str | None = None
    analyzer: str = "standard"
    boost: float = 1.0
    reduce: str = "first"
    copy_from: list[str] = field(default_factory=list)
    stored: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    feature: bool = False  # number fields: a ranking feature (souk.ranking.features)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        if self.source and self.source != self.name:
            d["from"] = self.source
        if self.kind == "text":
            d.update(analyzer=self.analyzer, boost=self.boost)
            if self.copy_from:
                d["copy_from"] = list(self.copy_from)
        if self.reduce != "first":
            d["reduce"] = self.reduce
        if not self.stored:
            d["stored"] = False
        if self.params:
            d["params"] = dict(self.params)
        if self.feature:
            d["feature"] = True
        return d


@dataclass
class Schema:
    """Fields keyed by name plus the id field, default search fields and free-form sections."""

    id_field: str
    fields: dict[str, Field]
    search_fields: list[str] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)

    # ---- views -------------------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[Field]:
        return [f for f in self.fields.values() if f.kind == kind]

    @property
    def text_fields(self) -> list[Field]:
        return self.of_kind("text")

    @property
    def vector_fields(self) -> list[Field]:
        return self.of_kind("vector")

    def content_fields(self) -> list[str]:
        """Fields holding the document's own text: text fields and the sources of copy fields."""
        names: list[str] = []
        for f in self.text_fields:
            for name in f.copy_from or [f.name]:
                if name not in names:
                    names.append(name)
        return names

    def field(self, name: str, kinds: Iterable[str] | None = None) -> Field:
        """The field called `name`, optionally required to be of one of `kinds`."""
        f = self.fields.get(name)
        if f is None or (kinds is not None and f.kind not in kinds):
            allowed = [n for n, g in self.fields.items() if kinds is None or g.kind in kinds]
            what = "/".join(kinds) if kinds else "any"
            raise ConfigError(f"no {what} field {name!r}; fields of that kind: {', '.join(allowed) or '(none)'}")
        return f

    # ---- (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id_field,
            "fields": {n: f.to_dict() for n, f in self.fields.items()},
            "search": {"fields": list(self.search_fields)},
            "analysis": dict(self.analysis),
            "pipelines": {k: dict(v) for k, v in self.pipelines.items()},
            "query": dict(self.query),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "schema") -> "Schema":
        """Build and validate; every error names `origin` and the offending key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a table at top level")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise ConfigError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
        raw_fields = data.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            raise ConfigError(f"{origin}: [fields] must declare at least one field")
        fields = {name: _parse_field(name, spec, origin) for name, spec in raw_fields.items()}
        id_field = data.get("id")
        if not isinstance(id_field, str) or not id_field:
            raise ConfigError(f"{origin}: key 'id' must name the id field (a string)")
        search = data.get("search", {})
        if not isinstance(search, dict):
            raise ConfigError(f"{origin}: [search] must be a table")
        search_fields = search.get("fields") or [f.name for f in fields.values() if f.kind == "text"]
        if not isinstance(search_fields, list) or not all(isinstance(n, str) for n in search_fields):
            raise ConfigError(f"{origin}: search.fields must be a list of field names, got {search_fields!r}")
        schema = cls(
            id_field=id_field,
            fields=fields,
            search_fields=list(search_fields),
            analysis=dict(data.get("analysis", {})),
            pipelines=_tables(data, "pipelines", origin),
            query=_table(data, "query", origin),
        )
        _check(schema, origin)
        return schema

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        """Read a TOML (or JSON) schema file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"schema file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from e
        return cls.from_dict(data, origin=str(path))

    # ---- records -----------------------------------------------------------------------------
    def extract(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """Typed values of one record, or problems as (field, message); never both."""
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for f in self.fields.values():
            if f.copy_from or f.kind == "vector":
                continue
            raw = lookup(record, f.source or f.name)
            try:
                value = _coerce(f, raw)
            except ValueError as e:
                problems.append((f.name, str(e)))
                continue
            if value is not None:
                values[f.name] = value
        doc_id = values.get(self.id_field)
        if isinstance(doc_id, list):
            doc_id = values[self.id_field] = doc_id[0] if len(doc_id) == 1 else None
        if self.id_field not in [p[0] for p in problems] and not doc_id:
            problems.append((self.id_field, "missing id (or several ids)"))
        return (None, problems) if problems else (values, [])


def lookup(record: Any, path: str) -> Any:
    """Value at a dot path; `a[].b` maps over the list at `a`. Missing parts give None."""
    if isinstance(record, dict) and path in record:
        return record[path]
    node: Any = record
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part.endswith("[]"):
            seq = node.get(part[:-2]) if isinstance(node, dict) else None
            if not isinstance(seq, list):
                return None
            rest = ".".join(parts[i + 1 :])
            out = [lookup(x, rest) if rest else x for x in seq]
            return [x for x in out if x is not None]
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def _parse_field(name: str, spec: Any, origin: str) -> Field:
    where = f"{origin}: fields.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    if not _NAME.match(name) or name.startswith("__"):
        raise SchemaError(f"{where}: field names are letters, digits and '_' and start with a letter")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise SchemaError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    analyzer = spec.get("analyzer", "standard")
    if analyzer not in analyzer_names():
        raise SchemaError(f"{where}.analyzer: {analyzer!r} is not one of {', '.join(analyzer_names())}")
    boost = spec.get("boost", 1.0)
    if not isinstance(boost, (int, float)) or boost <= 0:
        raise SchemaError(f"{where}.boost: must be a positive number")
    reduce = spec.get("reduce", "first")
    if reduce not in REDUCERS:
        raise SchemaError(f"{where}.reduce: {reduce!r} is not one of {', '.join(REDUCERS)}")
    copy_from = spec.get("copy_from", [])
    if copy_from and kind != "text":
        raise SchemaError(f"{where}.copy_from: only text fields can copy from others")
    params = spec.get("params", {})
    if not isinstance(params, dict):
        raise SchemaError(f"{where}.params: expected a table")
    feature = spec.get("feature", False)
    if not isinstance(feature, bool) or (feature and kind != "number"):
        raise SchemaError(f"{where}.feature: only number fields can be ranking features (true/false)")
    return Field(
        name=name, kind=kind, source=spec.get("from", name), analyzer=analyzer, boost=float(boost),
        reduce=reduce, copy_from=list(copy_from), stored=bool(spec.get("stored", not copy_from)), params=params,
        feature=feature,
    )


def _table(data: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: {key} must be a table ([{key}]), got {value!r}")
    return dict(value)


def _tables(data: dict[str, Any], key: str, origin: str) -> dict[str, dict[str, Any]]:
    """A table of tables, e.g. [pipelines.NAME]; the values' contents are checked by their owner."""
    out = {}
    for name, value in _table(data, key, origin).items():
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: {key}.{name} must be a table ([{key}.{name}]), got {value!r}")
        out[name] = dict(value)
    return out


def _check(schema: Schema, origin: str) -> None:
    if schema.id_field not in schema.fields:
        raise SchemaError(f"{origin}: id field {schema.id_field!r} is not declared under [fields]")
    if schema.fields[schema.id_field].kind not in ("keyword", "text", "stored"):
        raise SchemaError(f"{origin}: id field {schema.id_field!r} must be a string field")
    for f in schema.fields.values():
        for src in f.copy_from:
            if src not in schema.fields or schema.fields[src].kind not in ("text", "stored"):
                raise SchemaError(f"{origin}: fields.{f.name}.copy_from: {src!r} is not a text or stored field")
        if f.kind == "vector":
            from souk.index import vectors

            f.params = vectors.validate_params(f)
    for name in schema.search_fields:
        if name not in schema.fields or schema.fields[name].kind != "text":
            raise SchemaError(f"{origin}: search.fields: {name!r} is not a text field")
    if not schema.search_fields and schema.text_fields:
        schema.search_fields = [f.name for f in schema.text_fields]


def _coerce(f: Field, raw: Any) -> Any:
    """Type-check and convert one raw value for field `f` (ValueError names the problem)."""
    if raw is None or raw == [] or raw == "":
        return None
    if f.kind == "number":
        items = raw if isinstance(raw, list) else [raw]
        nums = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float, str)):
                raise ValueError(f"expected a number, got {type(item).__name__} {item!r:.40}")
            try:
                num = float(item)
            except ValueError:
                raise ValueError(f"expected a number, got {item!r:.40}") from None
            if not math.isfinite(num):
                raise ValueError(f"expected a finite number, got {item!r:.40}")
            nums.append(num)
        return _reduce(f.reduce, nums)
    items = raw if isinstance(raw, list) else [raw]
    for item in items:
        if isinstance(item, (dict, list)):
            raise ValueError(f"expected text, got {type(item).__name__}")
        if isinstance(item, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in item):
            raise ValueError("invalid UTF-8")
    strings = [str(x).lower() if isinstance(x, bool) else str(x) for x in items]
    if f.kind == "keyword":
        vals = [v for v in (normalize_keyword(s) for s in strings) if v]
        return vals or None
    return " ".join(strings)


def _reduce(how: str, nums: list[float]) -> float:
    if how == "min":
        return min(nums)
    if how == "max":
        return max(nums)
    if how == "sum":
        return sum(nums)
    return nums[0]


def beir_schema() -> Schema:
    """BEIR corpora keep BEIR's names: `_id`, `title`, `text`, searched as one concatenated field."""
    return Schema.from_dict({
        "id": "_id",
        "fields": {
            "_id": {"kind": "keyword"},
            "title": {"kind": "stored"},
            "text": {"kind": "stored"},
            "all": {"kind": "text", "copy_from": ["title", "text"]},
        },
        "search": {"fields": ["all"]},
    }, origin="BEIR schema")


def infer_schema(records: list[dict[str, Any]]) -> Schema:
    """Guess a schema from sample records: ids by name, numbers, low-cardinality keywords, text.

    Nested objects are flattened (`name.en` becomes field `name_en` with `from = "name.en"`).
    """
    if not records:
        raise SchemaError("cannot infer a schema from an empty catalog; pass --schema")
    samples: dict[str, list[Any]] = {}
    for rec in records:
        for path, value in _flatten(rec):
            samples.setdefault(path, []).append(value)
    id_path = next((c for c in ID_CANDIDATES if c in samples), None)
    if id_path is None:
        raise SchemaError(
            f"no id field found among {sorted(samples)[:12]}; name one of {', '.join(ID_CANDIDATES)} "
            "or pass --schema with id = \"FIELD\"")
    fields: dict[str, dict[str, Any]] = {}
    for path, values in samples.items():
        name = re.sub(r"[^A-Za-z0-9_]", "_", path.replace("[]", "")).strip("_") or "field"
        name = name if name[0].isalpha() or name == "_id" else "f_" + name
        spec: dict[str, Any] = {"kind": _guess_kind(path, values, path == id_path)}
        if name != path:
            spec["from"] = path
        if spec["kind"] == "number" and "[]" in path:
            spec["reduce"] = "min"
        fields[name] = spec
    id_name = next(n for n, s in fields.items() if s.get("from", n) == id_path)
    return Schema.from_dict({"id": id_name, "fields": fields}, origin="inferred schema")


def _flatten(rec: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(rec, dict):
        for k, v in rec.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(rec, list) and rec and all(isinstance(x, dict) for x in rec):
        for x in rec:
            yield from _flatten(x, prefix + "[]")
    else:
        yield prefix, rec


def _guess_kind(path: str, values: list[Any], is_id: bool) -> str:
    present = [v for v in values if v not in (None, "", [])]
    if is_id:
        return "keyword"
    if not present:
        return "stored"
    if all(_numeric(v) for v in present):
        return "number"
    if all(isinstance(v, list) for v in present):
        return "keyword"
    strings = [str(v) for v in present]
    mean_len = sum(map(len, strings)) / len(strings)
    distinct = len(set(strings)) / len(strings)
    if mean_len > 40:
        return "text"
    hinted = any(h in path.lower() for h in KEYWORD_HINTS)
    return "keyword" if hinted or (distinct <= 0.5 and len(strings) >= 20) else "text"


def _numeric(v: Any) -> bool:
    """Numbers and numeric strings; zero-padded codes such as "00123" stay strings."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return False
    if isinstance(v, (int, float)):
        return True
    s = v.strip()
    if len(s) > 1 and s[0] == "0" and s[1] != ".":
        return False
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False
