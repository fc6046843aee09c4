"""The `entities` query step: brands, categories, models, ... recognized in the query, and the filters or
boosts they become.

```toml
[query]
steps = ["syntax", "spell", "entities"]
[query.entities]
# keyword fields whose values are the gazetteer (default: fields named like brand/category)
fields = ["brand", "category"]
aliases = {"日清" = "Nissin"}     # other names of catalog values
tagger = "models/ner"            # optional `souk ner train` directory (relative to the index)
types = {HPPX = "brand"}         # tagger type -> keyword field its entities boost
min_score = 0.6                  # tagger entities below this are ignored
use = "boost"                    # "boost" | "filter" | "none" (only listed in the plan)
weight = 2.0                     # score added by a boost (BM25 scale)
```
Every recognized entity is listed in `plan.entities`. Gazetteer matches are exact catalog values, so
only they may become filters (`use = "filter"`); tagger entities only ever boost. Boosts act in BM25
recall (and through it in hybrid and the learned stages).
Misuse: `use = "filter"` on a catalog whose brand names are also common words ("apple" the fruit): a
filter hides every other document; prefer boosts there.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError, ModelUnavailable
from souk.query.plan import QueryPlan, register_rewriter

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

USES = ("boost", "filter", "none")
OPTIONS = {"fields", "aliases", "tagger", "types", "min_score", "use", "weight"}


@register_rewriter("entities")
class EntityRewriter:
    """Gazetteer (built from the index's keyword values once per snapshot) plus an optional tagger."""

    def __init__(self, searcher: Searcher, options: dict[str, Any] | None = None):
        from souk.query.entities.gazetteer import Gazetteer

        options = dict(options or {})
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise ConfigError(f"query.entities.{unknown[0]}: unknown option; known: {', '.join(sorted(OPTIONS))}")
        self.use = options.get("use", "boost")
        if self.use not in USES:
            raise ConfigError(f"query.entities.use: expected one of {', '.join(USES)}, got {self.use!r}")
        self.weight = options.get("weight", 2.0)
        self.min_score = options.get("min_score", 0.6)
        for key in ("weight", "min_score"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"query.entities.{key}: expected a number >= 0, got {value!r}")
        fields = options.get("fields")
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
            raise ConfigError(f"query.entities.fields: expected a list of keyword field names, got {fields!r}")
        aliases = options.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
            raise ConfigError(f"query.entities.aliases: expected a table of name = catalog value, got {aliases!r}")
        try:
            self.gazetteer = Gazetteer.from_index(searcher, fields, aliases)
        except (ConfigError, KeyError) as e:
            raise ConfigError(f"query.entities.fields: {e}") from e
        self.types = options.get("types", {})
        if not isinstance(self.types, dict):
            raise ConfigError("query.entities.types: expected a table of tagger type = keyword "
                              f"field, got {self.types!r}")
        for kind, name in self.types.items():
            field = searcher.schema.fields.get(name)
            if field is None or field.kind != "keyword":
                raise ConfigError(f"query.entities.types.{kind}: {name!r} is not a keyword field")
        self.tagger = None
        self.note: str | None = None
        if "tagger" in options:
            from souk.query.entities.tagger import Tagger

            path = Path(searcher.path) / str(options["tagger"])
            try:
                self.tagger = Tagger.load(path)
            except ModelUnavailable as e:  # damaged: catalog values are still recognized, with a note
                self.note = f"entity tagger skipped: {e}"

    def rewrite(self, plan: QueryPlan) -> QueryPlan:
        from souk.index.filters import Filter
        from souk.query.entities.recognize import recognize

        if not plan.text.strip():
            return plan
        if self.note:
            plan.notes.append(self.note)
        found = recognize(plan.text, self.gazetteer, self.tagger, self.min_score)
        plan.entities.extend(found)
        if self.use == "none":
            return plan
        by_field: dict[str, list[str]] = {}
        for e in found:
            field = e.type if e.source == "gazetteer" else self.types.get(e.type)
            if field is None:
                continue
            if self.use == "filter" and e.source == "gazetteer":
                by_field.setdefault(field, []).append(e.value)
            else:
                plan.boosts.append({"field": field, "value": e.value, "weight": float(self.weight), "source": e.source})
        for field, values in by_field.items():
            plan.filters.append(Filter(field, "=", tuple(dict.fromkeys(values))))
            plan.notes.append(f"filtered on {field}={'|'.join(dict.fromkeys(values))} (recognized in the query)")
        return plan
