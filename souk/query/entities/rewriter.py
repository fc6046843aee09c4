"""The `entities` query step: brands, categories, models, ... recognized in the query, and the filters or
boosts they become.

```toml
[query]
steps = ["syntax", "spell", "entities"]
[query.entities]
# keyword fields whose values are the gazetteer (default: fields named like brand/category)
fields = ["brand", "category"]
aliases = {"日清" = "Nissin"}     # other names of catalog values
tagger = "models/ner"            # optional `souk ner train` directory (relative to the index) or model name
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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from souk.errors import ConfigError, ModelUnavailable
from souk.plugins import option_check, parse_options
from souk.query.plan import QUERY_STEPS, QueryPlan

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

USES = ("boost", "filter", "none")
_AT_LEAST_0 = option_check(lambda v: v >= 0, "a number >= 0")


def _str_table(expected: str) -> dict[str, Any]:
    return option_check(lambda v: all(isinstance(x, str) for x in v.values()), expected)


@dataclass
class EntityOptions:
    """`[query.entities]`."""

    fields: list[str] | None = None
    aliases: dict[str, str] = field(default_factory=dict, metadata=_str_table("a table of name = catalog value"))
    tagger: str | None = None
    types: dict[str, str] = field(default_factory=dict, metadata=_str_table("a table of tagger type = keyword field"))
    min_score: float = field(default=0.6, metadata=_AT_LEAST_0)
    use: Literal["boost", "filter", "none"] = "boost"
    weight: float = field(default=2.0, metadata=_AT_LEAST_0)


@QUERY_STEPS.register("entities")
class EntityRewriter:
    """Gazetteer (built from the index's keyword values once per snapshot) plus an optional tagger."""

    def __init__(self, searcher: Searcher, options: dict[str, Any] | None = None):
        from souk.query.entities.gazetteer import Gazetteer

        opts = parse_options("query.entities", options, EntityOptions)
        self.use, self.weight, self.min_score = opts.use, opts.weight, opts.min_score
        fields, aliases = opts.fields, opts.aliases
        try:
            self.gazetteer = Gazetteer.from_index(searcher, fields, aliases)
        except (ConfigError, KeyError) as e:
            raise ConfigError(f"query.entities.fields: {e}") from e
        self.types = opts.types
        for kind, name in self.types.items():
            field = searcher.schema.fields.get(name)
            if field is None or field.kind != "keyword":
                raise ConfigError(f"query.entities.types.{kind}: {name!r} is not a keyword field")
        self.tagger = None
        self.note: str | None = None
        if opts.tagger is not None:
            from souk.models import store
            from souk.query.entities.tagger import Tagger

            try:
                path = store.resolve(searcher.path, "tagger", opts.tagger)
                self.tagger = store.cached(path, Tagger.load) if path is not None else None
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
