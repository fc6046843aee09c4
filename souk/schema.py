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
    [analysis]
    user_dict = "words.txt"  # a jieba user dictionary (one word per line)
    word_parts = true        # mate40pro is also mate 40 pro (default for new indexes; older ones keep false)
    [fields.price_usd]
    kind = "number"
    from = "price"           # "$11.99", "¥1,299", "1.299,50 €" are read as numbers
    unit = "$"               # the currency (or unit) shown with the value; inferred from the values
    decimal = ","            # the decimal mark of this field's values ("." or ","; default: either)
    [fields.category_path]
    kind = "keyword"
    from = "category_tree"
    hierarchy = ">>"         # "A >> B >> C": filter on any level's path, facet level by level
    [catalog]
    columns = ["code", "title", "price"] # names of the columns of a CSV/TSV file without a header row
    decimal = ","                        # the decimal mark of every number field (default: either)

A schema file without `[fields]` (only `id = "..."`, say) is completed by `infer` from the catalog.
Every value is type-checked (`stored = "no"` is an error, not true); limits come from `souk.limits`.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from souk.analysis.registry import ANALYZERS, analyzer_name
from souk.analysis.normalize import normalize_keyword
from souk.analysis.values import (DECIMALS, decimal_of, guess_hierarchy, hierarchy_levels, hierarchy_paths,
                                  is_currency, parse_number)
from souk.errors import ConfigError, SchemaError
from souk.limits import MAX_FIELD_CHARS, MAX_FIELDS, MAX_ID_BYTES, MAX_TERM_BYTES

KINDS = ("text", "keyword", "number", "stored", "vector")
REDUCERS = ("first", "min", "max", "sum", "join")
_FIELD_KEYS = {"kind", "from", "analyzer", "boost", "reduce", "copy_from", "stored", "params", "feature",
               "unit", "decimal", "hierarchy"}
_TOP_KEYS = {"id", "fields", "search", "analysis", "pipelines", "query", "catalog"}
_CATALOG_KEYS = {"columns", "decimal"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$|^_id$")
KEYWORD_HINTS = ("brand", "category", "colour", "color", "size", "type", "tag", "vendor", "maker", "manufacturer",
                 "supermarket", "country", "grade", "status")
ID_CANDIDATES = ("_id", "id", "uniq_id", "sku", "product_id", "item_id", "asin", "doc_id", "article_id", "variant_id",
                 "product_code", "item_code", "code", "ean", "gtin", "upc", "barcode")
_ID_KEYS = {re.sub(r"[\s_\-]", "", c.lower()): i for i, c in enumerate(ID_CANDIDATES)}
HIERARCHY_HINTS = ("category", "categories", "tree", "path", "breadcrumb", "taxonomy", "department")
NUMBER_MAJORITY = 0.9  # share of numeric values above which an inferred column is a number despite a few texts


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
    unit: str | None = None  # number fields: the currency or unit the values are in ("$", "HK$", "EUR", "ml")
    decimal: str | None = None  # number fields: the decimal mark of the values ("." or ","; None: either)
    hierarchy: str | None = None  # keyword fields: the separator of category paths (">", ">>", "|")

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
        for key in ("unit", "decimal", "hierarchy"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
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
    catalog: dict[str, Any] = field(default_factory=dict)

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

    def analyzer_of(self, f: Field) -> str:
        """The analyzer text field `f` is indexed and searched with: its own, with word parts where `[analysis]
        word_parts` is on (`souk.analysis.registry`; `Index.create` turns it on unless the schema says false,
        so an index created before it keeps its terms). Misuse: `get_analyzer(f.analyzer)` for a field's terms."""
        return analyzer_name(f.analyzer, self.analysis.get("word_parts") is True)

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
        data = {
            "id": self.id_field,
            "fields": {n: f.to_dict() for n, f in self.fields.items()},
            "search": {"fields": list(self.search_fields)},
            "analysis": dict(self.analysis),
            "pipelines": {k: dict(v) for k, v in self.pipelines.items()},
            "query": dict(self.query),
        }
        if self.catalog:
            data["catalog"] = dict(self.catalog)
        return data

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
            raise ConfigError(f"{origin}: [fields] must be a table declaring at least one field "
                              "(leave [fields] out of a schema file to infer them from the catalog)")
        if len(raw_fields) > MAX_FIELDS:
            raise SchemaError(f"{origin}: {len(raw_fields)} fields, more than the limit of {MAX_FIELDS}")
        fields = {name: _parse_field(name, spec, origin) for name, spec in raw_fields.items()}
        id_field = data.get("id")
        if not isinstance(id_field, str) or not id_field:
            raise ConfigError(f"{origin}: key 'id' must name the id field (a string)")
        search = _table(data, "search", origin)
        search_fields = search.get("fields", [])
        if not _strings(search_fields):
            raise ConfigError(f"{origin}: search.fields must be a list of field names, got {search_fields!r:.40}")
        unknown = set(search) - {"fields"}
        if unknown:
            raise ConfigError(f"{origin}: search: unknown key(s) {sorted(unknown)}; allowed: ['fields']")
        schema = cls(
            id_field=id_field,
            fields=fields,
            search_fields=list(search_fields) or [f.name for f in fields.values() if f.kind == "text"],
            analysis=_analysis(_table(data, "analysis", origin), origin),
            pipelines=_tables(data, "pipelines", origin),
            query=_table(data, "query", origin),
            catalog=_catalog(_table(data, "catalog", origin), origin),
        )
        _check(schema, origin)
        return schema

    @classmethod
    def load(cls, path: str | Path) -> "Schema":
        """Read a TOML (or JSON) schema file."""
        return cls.from_dict(read_schema_file(path), origin=str(path))

    # ---- records -----------------------------------------------------------------------------
    def extract(self, record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[tuple[str, str]]]:
        """Typed values of one record, or problems as (field, message); never both."""
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        decimal = self.catalog.get("decimal")
        plain = isinstance(record, dict)
        for f in self.fields.values():
            if f.copy_from or f.kind == "vector":
                continue
            path = f.source or f.name
            raw = record[path] if plain and path in record else lookup(record, path)
            if type(raw) is str and raw.isascii() and raw:  # the usual values, as `_coerce` takes them, inline
                if (f.kind == "text" or f.kind == "stored") and len(raw) <= MAX_FIELD_CHARS:
                    values[f.name] = raw
                    continue
                if f.kind == "keyword" and not f.hierarchy and len(raw) <= MAX_TERM_BYTES:
                    if raw := raw.strip():
                        values[f.name] = [raw]
                    continue
            try:
                value = _coerce(f, raw, decimal)
            except ValueError as e:
                problems.append((f.name, str(e)))
                continue
            if value is not None:
                values[f.name] = value
        doc_id = values.get(self.id_field)
        if isinstance(doc_id, list):
            doc_id = values[self.id_field] = doc_id[0] if len(doc_id) == 1 else None
        if not problems or self.id_field not in [p[0] for p in problems]:
            if not doc_id:
                problems.append((self.id_field, "missing id (or several ids)"))
            elif (not doc_id.isascii() or len(doc_id) > MAX_ID_BYTES) \
                    and len(doc_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
                problems.append((self.id_field, f"id of {len(doc_id.encode('utf-8', 'surrogatepass'))} bytes is "
                                                f"longer than the id limit of {MAX_ID_BYTES} bytes"))
        return (None, problems) if problems else (values, [])


def read_schema_file(path: str | Path) -> dict[str, Any]:
    """The raw table of a TOML (or JSON) schema file, unvalidated (see `Schema.from_dict`, `complete`)."""
    path = Path(path)
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"schema file {path} {what}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table at top level")
    analysis = data.get("analysis")
    if isinstance(analysis, dict) and isinstance(analysis.get("user_dict"), str):
        user_dict = Path(analysis["user_dict"])
        if not user_dict.is_file():
            raise ConfigError(f"{path}: analysis.user_dict: {user_dict} is not a file (a jieba user dictionary)")
        data["analysis"] = {**analysis, "user_dict": str(user_dict.resolve())}
    return data


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
    shown = name if name.isprintable() else repr(name)  # a message stays one line whatever the name holds
    where = f"{origin}: fields.{shown}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table ([fields.{shown}]), got {_type_name(spec)}")
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}")
    if not _NAME.match(name) or name.startswith("__"):
        raise SchemaError(f"{where}: field names are letters, digits and '_' and start with a letter")
    kind = spec.get("kind")
    if kind not in KINDS:
        got = "missing" if kind is None else f"{kind!r:.40} is not one of {', '.join(KINDS)}"
        raise SchemaError(f"{where}.kind: {got}" + ("; one of " + ", ".join(KINDS) if kind is None else ""))
    source = spec.get("from", name)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where}.from: expected a dot path (a string such as \"name.en\"), got "
                          f"{_type_name(source)} {source!r:.40}")
    analyzer = spec.get("analyzer", "standard")
    if not isinstance(analyzer, str) or analyzer not in ANALYZERS:
        raise SchemaError(f"{where}.analyzer: {analyzer!r:.40} is not one of {', '.join(ANALYZERS.names())}")
    boost = spec.get("boost", 1.0)
    if isinstance(boost, bool) or not isinstance(boost, (int, float)) or not math.isfinite(boost) or boost <= 0:
        raise SchemaError(f"{where}.boost: must be a positive finite number, got {boost!r:.40}")
    reduce = spec.get("reduce", "first")
    if not isinstance(reduce, str) or reduce not in REDUCERS:
        raise SchemaError(f"{where}.reduce: {reduce!r:.40} is not one of {', '.join(REDUCERS)}")
    copy_from = spec.get("copy_from", [])
    if not _strings(copy_from):
        raise ConfigError(f"{where}.copy_from: expected a list of field names, got {copy_from!r:.40}")
    if copy_from and kind != "text":
        raise SchemaError(f"{where}.copy_from: only text fields can copy from others")
    stored = spec.get("stored", not copy_from)
    if not isinstance(stored, bool):
        raise ConfigError(f"{where}.stored: expected true or false, got {_type_name(stored)} {stored!r:.40}")
    params = spec.get("params", {})
    if not isinstance(params, dict):
        raise SchemaError(f"{where}.params: expected a table")
    feature = spec.get("feature", False)
    if not isinstance(feature, bool) or (feature and kind != "number"):
        raise SchemaError(f"{where}.feature: only number fields can be ranking features (true/false)")
    unit, decimal, hierarchy = spec.get("unit"), spec.get("decimal"), spec.get("hierarchy")
    if unit is not None and (kind != "number" or not isinstance(unit, str) or not 0 < len(unit.strip()) <= 16):
        raise SchemaError(f"{where}.unit: only number fields have a unit, a short string such as "
                          "\"$\", \"EUR\" or \"ml\"")
    if decimal is not None and (kind != "number" or decimal not in DECIMALS):
        raise SchemaError(f"{where}.decimal: only number fields have a decimal mark, \".\" or "
                          f"\",\"; got {decimal!r:.20}")
    if hierarchy is not None and (kind != "keyword" or not isinstance(hierarchy, str)
                                  or not 0 < len(hierarchy.strip()) <= 8 or hierarchy != hierarchy.strip()):
        raise SchemaError(f"{where}.hierarchy: only keyword fields are hierarchies; the level separator, "
                          f"such as \">\", \">>\" or \"|\", got {hierarchy!r:.20}")
    return Field(
        name=name, kind=kind, source=source, analyzer=analyzer, boost=float(boost),
        reduce=reduce, copy_from=list(copy_from), stored=stored, params=params, feature=feature,
        unit=unit.strip() if unit else None, decimal=decimal, hierarchy=hierarchy,
    )


def _table(data: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: {key} must be a table ([{key}]), got {_type_name(value)} {value!r:.40}")
    return dict(value)


def _tables(data: dict[str, Any], key: str, origin: str) -> dict[str, dict[str, Any]]:
    """A table of tables, e.g. [pipelines.NAME]; the values' contents are checked by their owner."""
    out = {}
    for name, value in _table(data, key, origin).items():
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: {key}.{name} must be a table ([{key}.{name}]), got "
                              f"{_type_name(value)} {value!r:.40}")
        out[name] = dict(value)
    return out


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def for_new_index(schema: Schema) -> Schema:
    """`schema` as `Index.create` stores it: `[analysis] word_parts` on unless the schema says false (an index
    created before the key existed has none, so it keeps the terms it was written with)."""
    if "word_parts" in schema.analysis:
        return schema
    return dataclasses.replace(schema, analysis={**schema.analysis, "word_parts": True})


def _type_name(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _analysis(analysis: dict[str, Any], origin: str) -> dict[str, Any]:
    """`[analysis]`; a `user_dict` is a path (checked to exist when a schema file is read)."""
    user_dict = analysis.get("user_dict")
    if user_dict is not None and (not isinstance(user_dict, str) or not user_dict):
        raise ConfigError(f"{origin}: analysis.user_dict: expected a file path (a string)")
    if not isinstance(analysis.get("word_parts", False), bool):
        raise ConfigError(f"{origin}: analysis.word_parts: expected true or false")
    return dict(analysis)


def _catalog(catalog: dict[str, Any], origin: str) -> dict[str, Any]:
    unknown = set(catalog) - _CATALOG_KEYS
    if unknown:
        raise ConfigError(f"{origin}: catalog: unknown key(s) {sorted(unknown)}; allowed: {sorted(_CATALOG_KEYS)}")
    columns = catalog.get("columns")
    if columns is not None and (not _strings(columns) or len(set(columns)) != len(columns)):
        raise ConfigError(f"{origin}: catalog.columns: expected a list of distinct column names")
    if catalog.get("decimal", ".") not in DECIMALS:
        raise ConfigError(f"{origin}: catalog.decimal: the decimal mark of numbers, \".\" or \",\"; "
                          f"got {catalog.get('decimal')!r:.20}")
    return dict(catalog)


def _check(schema: Schema, origin: str) -> None:
    if schema.id_field not in schema.fields:
        close = difflib.get_close_matches(schema.id_field, list(schema.fields), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SchemaError(f"{origin}: id field {schema.id_field!r} is not declared under [fields]{hint}")
    if schema.fields[schema.id_field].kind not in ("keyword", "text", "stored"):
        raise SchemaError(f"{origin}: id field {schema.id_field!r} must be a string field")
    for f in schema.fields.values():
        for src in f.copy_from:
            if src not in schema.fields or schema.fields[src].kind not in ("text", "stored"):
                raise SchemaError(f"{origin}: fields.{f.name}.copy_from: {src!r} is not a text or stored field")
        if f.kind == "vector":
            _check_vector_source(schema, f, origin)
    _check_copy_sources(schema, origin)
    for name in schema.search_fields:
        if name not in schema.fields or schema.fields[name].kind != "text":
            raise SchemaError(f"{origin}: search.fields: {name!r} is not a text field")
    if not schema.search_fields and schema.text_fields:
        schema.search_fields = [f.name for f in schema.text_fields]


def _check_copy_sources(schema: Schema, origin: str) -> None:
    """A copy field reads fields holding their own values: one copying itself or another copy field (a cycle
    or a chain) would index nothing, so the schema is refused naming both fields."""
    for f in schema.fields.values():
        for src in f.copy_from:
            if src == f.name:
                raise SchemaError(f"{origin}: fields.{f.name}.copy_from: {f.name!r} copies itself; "
                                  "list the fields holding the text instead")
            other = schema.fields[src]
            if other.copy_from:
                back = " (and it copies back from " + repr(f.name) + ")" if f.name in other.copy_from else ""
                raise SchemaError(f"{origin}: fields.{f.name}.copy_from: {src!r} is a copy field itself{back}; "
                                  f"copy from its sources instead: {', '.join(other.copy_from)}")


def _check_vector_source(schema: Schema, f: Field, origin: str) -> None:
    """A vector field's `source` lists fields holding their own values. The rest of its params (model,
    index, ...) are checked by the index when it is created (`souk.index.vectors.config`)."""
    source = f.params.get("source", [])
    where = f"{origin}: fields.{f.name}.params.source"
    if not isinstance(source, list) or not all(isinstance(s, str) for s in source):
        raise SchemaError(f"{where}: expected a list of field names, got {source!r}")
    for name in source:
        src = schema.fields.get(name)
        if src is None:
            raise SchemaError(f"{where}: no field {name!r}; declared fields: {', '.join(schema.fields)}")
        if src.kind == "vector" or src.copy_from:
            what = "a copy field (name its sources instead)" if src.copy_from else "a vector field"
            raise SchemaError(f"{where}: {name!r} is {what}; a vector reads the values of text, keyword, "
                              "number or stored fields")


_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes read with surrogateescape


def _coerce(f: Field, raw: Any, decimal: str | None = None) -> Any:
    """Type-check and convert one raw value for field `f` (ValueError names the problem); `decimal`
    is the catalog's decimal mark, used where the field sets none."""
    if raw is None or raw == [] or raw == "":
        return None
    if type(raw) is str and f.kind in ("text", "stored"):  # the usual value, as the general path below treats it
        if not raw.isascii() and _SURROGATE.search(raw):
            raise ValueError("invalid UTF-8")
        if len(raw) > MAX_FIELD_CHARS:
            raise ValueError(f"value of {len(raw)} characters is longer than the field size limit "
                             f"({MAX_FIELD_CHARS:,} characters)")
        return raw
    if type(raw) is str and f.kind == "keyword" and not f.hierarchy and raw.isascii() and len(raw) <= MAX_TERM_BYTES:
        value = raw.strip()  # an id, a brand: what the general path gives (NFKC leaves ASCII as it is)
        return [value] if value else None
    if f.kind == "number":
        items = raw if isinstance(raw, list) else [raw]
        _check_in_range(items)
        nums = []
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float, str)):
                raise ValueError(f"expected a number, got {type(item).__name__} {item!r:.40}")
            if isinstance(item, str):
                num, currency = parse_number(item, f.decimal or decimal)
                if currency and is_currency(currency) and f.unit and is_currency(f.unit) \
                        and not same_currency(currency, f.unit):
                    raise ValueError(f"{item!r:.40} is in {currency}, but the field's unit is {f.unit}")
            else:
                try:
                    num = float(item) + 0.0  # -0.0 becomes 0.0: tantivy orders -0.0 below 0.0
                except (ValueError, OverflowError):
                    raise ValueError(f"expected a number, got {item!r:.40}") from None
            if not math.isfinite(num):
                raise ValueError(f"expected a finite number, got {item!r:.40}")
            nums.append(num)
        return _reduce(f.reduce, nums)
    items = raw if isinstance(raw, list) else [raw]
    _check_in_range(items)
    for item in items:
        if isinstance(item, (dict, list)):
            raise ValueError(f"expected text, got {type(item).__name__}")
        if isinstance(item, str) and not item.isascii() and _SURROGATE.search(item):
            raise ValueError("invalid UTF-8")
    strings = [str(x).lower() if isinstance(x, bool) else str(x) for x in items]
    if sum(map(len, strings)) > MAX_FIELD_CHARS:
        raise ValueError(f"value of {sum(map(len, strings))} characters is longer than the field size limit "
                         f"({MAX_FIELD_CHARS:,} characters)")
    if f.kind == "keyword":
        if f.hierarchy:
            strings = [p for s in strings for p in hierarchy_paths(s, f.hierarchy)]
        vals = [v for v in (normalize_keyword(s) for s in strings) if v]
        for v in vals:
            if len(v.encode("utf-8")) > MAX_TERM_BYTES:
                raise ValueError(f"keyword value of {len(v.encode('utf-8'))} bytes is longer than the term limit "
                                 f"of {MAX_TERM_BYTES} bytes")
        return vals or None
    return " ".join(strings)


_SAME_MONEY = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "HK$": "HKD", "元": "CNY", "RMB": "CNY",
               "円": "JPY", "₹": "INR", "Rs": "INR", "Rs.": "INR", "₩": "KRW", "NT$": "TWD", "S$": "SGD",
               "A$": "AUD", "C$": "CAD", "R$": "BRL", "NZ$": "NZD", "₽": "RUB"}


def same_currency(a: str, b: str) -> bool:
    """Whether two currency symbols or codes name the same money (`$` and `USD`; `¥` is JPY or CNY)."""
    if a == b:
        return True
    codes = [{"JPY", "CNY"} if x == "¥" else {_SAME_MONEY.get(x, x)} for x in (a, b)]
    return bool(codes[0] & codes[1])


class OutOfRange:
    """An integer literal of a JSON record beyond float range (2**1024, about 1.8e308; Python's own parser
    stops at 4300 digits): kept as its size only, so a field holding it is a per-record error
    (`_coerce`) instead of an exception that would stop a whole catalog or request."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


def json_int(literal: str) -> int | OutOfRange:
    """`parse_int` for `json.loads` of records: an int, or `OutOfRange` for one no number field can hold."""
    digits = len(literal) - literal.startswith("-")
    if digits <= 308:  # below 10**308 < 2**1024
        return int(literal)
    if digits > 309:  # at least 10**309: beyond every float (and, past 4300 digits, Python's int parser)
        return OutOfRange(digits)
    value = int(literal)
    return value if abs(value) < 2 ** 1024 else OutOfRange(digits)


def loads_json(text: str | bytes) -> Any:
    """`json.loads` for documents: integers out of every number's range become `OutOfRange` (see above)."""
    return json.loads(text, parse_int=json_int)


def _check_in_range(items: list[Any]) -> None:
    for item in items:
        if isinstance(item, OutOfRange):
            raise ValueError(f"an integer of {item.digits} digits is beyond the range of numbers (about 1.8e308)")


def _reduce(how: str, nums: list[float]) -> float:
    if how == "min":
        return min(nums)
    if how == "max":
        return max(nums)
    if how == "sum":
        total = math.fsum(nums)
        if not math.isfinite(total):
            raise ValueError("the sum of the values is not a finite number")
        return total
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


# ---- inference -----------------------------------------------------------------------------------
@dataclass
class Inference:
    """An inferred schema and what the guess rests on (renamed fields, kinds guessed by majority)."""

    schema: Schema
    notes: list[str] = field(default_factory=list)


def infer_schema(records: list[dict[str, Any]]) -> Schema:
    """Guess a schema from sample records (see `infer`, which also says what it guessed and why)."""
    return infer(records).schema


def infer(records: list[dict[str, Any]], id_field: str | None = None) -> Inference:
    """Guess a schema from sample records: ids by name, numbers, low-cardinality keywords, text.

    Nested objects are flattened (`name.en` becomes field `name_en` with `from = "name.en"`); names
    that would collide (`a_b` and `a.b`, `id` and `_id`) get a suffix and a note. `id_field` (a field
    name or a path in the records) picks the id instead of the usual names.
    """
    if not records:
        raise SchemaError("cannot infer a schema from an empty catalog; pass --schema")
    samples: dict[str, list[Any]] = {}
    for rec in records:
        for path, value in _flatten(rec):
            samples.setdefault(path, []).append(value)
    notes: list[str] = []
    unnamed = [p for p in samples if not p.replace("[]", "").replace(".", "").strip()]
    for path in unnamed:
        del samples[path]
        notes.append(f"values under the unnamed key {path!r} are not indexed")
    if len(samples) > MAX_FIELDS:
        raise SchemaError(f"the catalog has {len(samples)} distinct fields, more than the limit of {MAX_FIELDS}; "
                          "declare the fields to index with --schema")
    names, renamed = _field_names(samples)
    notes += renamed
    if id_field is not None:
        id_path = id_field if id_field in samples else next((p for p, n in names.items() if n == id_field), None)
        if id_path is None:
            close = difflib.get_close_matches(id_field, list(names.values()), n=3)
            raise SchemaError(f"id {id_field!r} is not a field of the catalog"
                              + (f"; did you mean {', '.join(close)}?" if close
                                 else f"; fields: {', '.join(list(names.values())[:12])}"))
    else:
        id_path = _id_column(samples, len(records))
    if id_path is None:
        raise SchemaError(
            f"no id field found among the catalog's {len(samples)} fields: "
            f"{', '.join(map(repr, samples))}; name one of "
            f"{', '.join(ID_CANDIDATES[:8])}... (any case, spaces or '_'), or write a schema file with "
            "id = \"FIELD\" (no [fields] needed) and pass it with --schema")
    fields: dict[str, dict[str, Any]] = {}
    for path, values in samples.items():
        kind, note = _guess_kind(path, values, path == id_path)
        if note:
            notes.append(f"field {names[path]!r}: {note}")
        spec: dict[str, Any] = {"kind": kind}
        if names[path] != path:
            spec["from"] = path
        if kind == "number" and "[]" in path:
            spec["reduce"] = "min"
        if kind == "number":
            spec.update(_number_options(values))
        sep = None if path == id_path or kind == "number" else _hierarchy_of(path, values)
        if sep is not None:
            if kind == "text" and f"{names[path]}_text" not in names.values():  # its words stay searchable
                fields[f"{names[path]}_text"] = {"kind": "text", "from": path}
            spec = {**spec, "kind": "keyword", "hierarchy": sep}
            notes.append(f"field {names[path]!r}: category paths split at {sep!r}, faceted level by level")
        fields[names[path]] = spec
    schema = Schema.from_dict({"id": names[id_path], "fields": fields}, origin="inferred schema")
    return Inference(schema, notes)


def complete(data: dict[str, Any], records: list[dict[str, Any]], origin: str = "schema") -> Inference:
    """The schema of a schema file's table: as declared, or, when it has no `[fields]`, the fields
    inferred from `records` merged with the rest of the file (its `id`, `[search]`, `[analysis]`...)."""
    if "fields" in data:
        return Inference(Schema.from_dict(data, origin=origin))
    if "id" in data and (not isinstance(data["id"], str) or not data["id"]):
        raise ConfigError(f"{origin}: key 'id' must name the id field (a string)")
    inferred = infer(records, id_field=data.get("id"))
    merged = {**inferred.schema.to_dict(), **{k: v for k, v in data.items() if k != "id"}}
    return Inference(Schema.from_dict(merged, origin=f"{origin} with inferred fields"), inferred.notes)


def _field_names(samples: dict[str, list[Any]]) -> tuple[dict[str, str], list[str]]:
    """A field name for each record path; colliding names get `_2`, `_3`... and a note."""
    names: dict[str, str] = {}
    notes: list[str] = []
    taken: set[str] = set()
    for path in samples:
        base = "_id" if path == "_id" else re.sub(r"[^A-Za-z0-9_]", "_", path.replace("[]", "")).strip("_") or "field"
        base = base if base[0].isalpha() or base == "_id" else "f_" + base
        name, n = base, 1
        while name in taken or name.startswith("__"):
            n += 1
            name = f"{base}_{n}"
        if name != base:
            clash = next(p for p, q in names.items() if q == base) if base in names.values() else base
            notes.append(f"{path!r} and {clash!r} both make the field name {base!r}; {path!r} is indexed as {name!r}")
        names[path] = name
        taken.add(name)
    return names, notes


def _flatten(rec: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(rec, dict):
        for k, v in rec.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(rec, list) and rec and all(isinstance(x, dict) for x in rec):
        for x in rec:
            yield from _flatten(x, prefix + "[]")
    else:
        yield prefix, rec


def _guess_kind(path: str, values: list[Any], is_id: bool) -> tuple[str, str | None]:
    """The kind of a column and, when the guess rests on a majority, a note saying so."""
    present = [v for v in values if v not in (None, "", [])]
    if is_id:
        return "keyword", None
    if not present:
        return "stored", None
    numeric = [v for v in present if _numeric(v)]
    if len(numeric) == len(present):
        return "number", None
    others = [v for v in present if not _numeric(v)]
    example = ", ".join(repr(v)[:30] for v in list(dict.fromkeys(map(str, others)))[:3])
    if len(numeric) >= NUMBER_MAJORITY * len(present):
        return "number", (f"number, as {len(numeric)} of {len(present)} sampled values are numbers; "
                          f"records with the other {len(others)} ({example}) will be rejected")
    note = None
    if len(numeric) >= len(present) / 2:
        note = f"text, though {len(numeric)} of {len(present)} sampled values are numbers (not: {example})"
    if all(isinstance(v, list) for v in present):
        return "keyword", note
    strings = [str(v) for v in present]
    mean_len = sum(map(len, strings)) / len(strings)
    distinct = len(set(strings)) / len(strings)
    if mean_len > 40:
        return "text", note
    hinted = any(h in path.lower() for h in KEYWORD_HINTS)
    kind = "keyword" if hinted or (distinct <= 0.5 and len(strings) >= 20) else "text"
    return kind, note.replace("text,", f"{kind},", 1) if note else None


def _numeric(v: Any) -> bool:
    """Numbers and numeric strings (prices such as "$11.99", "1.299,50 €" too); zero-padded codes
    such as "00123" stay strings."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return False
    if isinstance(v, (int, float)):
        try:
            return math.isfinite(v)
        except OverflowError:  # an int beyond float range
            return False
    s = v.strip()
    if len(s) > 1 and s[0] == "0" and s[1] not in ".,":
        return False
    try:
        parse_number(s)
        return True
    except (ValueError, OverflowError):
        return False


def _id_column(samples: dict[str, list[Any]], n_records: int) -> str | None:
    """The id column by its name (`id`, `SKU`, `Uniq Id`, `product_id`...: case, spaces and '_' ignored):
    the best-known name present in nearly every sampled record, else (a catalog with some ids missing, whose
    records then fail one by one) the best-known name present in at least half of them."""
    found: list[tuple[bool, int, str]] = []
    for path, values in samples.items():
        if "[]" in path or "." in path:
            continue
        rank = _ID_KEYS.get(re.sub(r"[\s_\-]", "", path.lower()))
        present = sum(1 for v in values if v not in (None, "", []) and not isinstance(v, (dict, list)))
        if rank is not None and present >= 0.5 * n_records:
            found.append((present < 0.95 * n_records, rank, path))
    return min(found)[2] if found else None


def _number_options(values: list[Any]) -> dict[str, Any]:
    """The unit (the currency most values are written with) and decimal mark of an inferred number column."""
    strings = [v.strip() for v in values if isinstance(v, str) and v.strip()]
    units: dict[str, int] = {}
    marks: dict[str, int] = {}
    for s in strings:
        try:
            _, unit = parse_number(s)
        except ValueError:
            continue
        if unit:
            units[unit] = units.get(unit, 0) + 1
        mark = decimal_of(s)
        if mark:
            marks[mark] = marks.get(mark, 0) + 1
    out: dict[str, Any] = {}
    if units:
        unit, count = max(units.items(), key=lambda kv: kv[1])
        if count >= len(values) / 2:
            out["unit"] = unit
    if marks.get(",", 0) > marks.get(".", 0):
        out["decimal"] = ","
    return out


def _hierarchy_of(path: str, values: list[Any]) -> str | None:
    """The level separator of a column of category paths, or None. Columns named like categories need
    60% of their values to be paths; others 90%."""
    strings = [v for v in values if isinstance(v, str) and v.strip()]
    if len(strings) < 3 or len(strings) < 0.5 * len(values):
        return None
    hinted = any(h in path.lower() for h in HIERARCHY_HINTS)
    sep = guess_hierarchy(strings)
    if sep is None:
        return None
    if not hinted:
        paths = sum(1 for s in strings if len(hierarchy_levels(s, sep)) >= 2)
        if paths < 0.9 * len(strings) or sum(map(len, strings)) / len(strings) > 200:
            return None
    return sep


# ---- TOML ------------------------------------------------------------------------------------------
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(schema: Schema, comments: Iterable[str] = ()) -> str:
    """The schema as a TOML file that `Schema.load` reads back to the same schema (`comments` go on top)."""
    data = schema.to_dict()
    lines = [f"# {c}" for comment in comments for c in str(comment).splitlines()]
    lines.append(f"id = {_toml_value(data['id'])}")
    for section in ("search", "analysis", "query", "catalog"):
        table = data.get(section)
        if table:
            lines += ["", f"[{section}]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())]
    for group in ("fields", "pipelines"):
        for name, table in data.get(group, {}).items():
            lines += ["", f"[{group}.{_toml_key(name)}]",
                      *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string but for DEL
        return text.replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r:.40} as TOML")
