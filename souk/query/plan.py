"""The query plan: what souk understood a query string to mean, made once per request.

Query steps registered by name in `QUERY_STEPS` (`@QUERY_STEPS.register("name")`) turn the raw string
into a `QueryPlan` in the order the index config's `[query] steps` names them; retrievers and stages
read the plan, never the raw string. Every step records what it did, so `souk explain` and the search page can show it.
Misuse: a stage re-parsing `plan.original` instead of reading `plan.text`/`plan.expansions`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from souk.analysis.normalize import han_share, normalize
from souk.analysis.syntax import ParsedQuery, parse_query
from souk.errors import ConfigError
from souk.plugins import NoOptions, Registry, parse_options

if TYPE_CHECKING:
    pass


@dataclass
class Expansion:
    """Extra words joined to the query with a lower weight (never required)."""

    text: str
    weight: float
    source: str  # "synonyms", "spelling", "compound", ...
    of: str = ""  # the query words it stands for (a synonym counts as them when every word must match)


@dataclass
class Entity:
    """A recognised span of the query: a brand, product type, model number, ..."""

    type: str
    text: str
    value: str
    start: int
    end: int
    source: str
    score: float = 1.0


@dataclass
class QueryPlan:
    """What recall and ranking search for. `text` is the string searched (after rewrites); `original`
    is what the user typed; `filters` are the request's filters plus any the plan adds."""

    original: str
    text: str
    normalized: str = ""
    syntax: ParsedQuery = field(default_factory=ParsedQuery)
    filters: list[Any] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    did_you_mean: str | None = None
    expansions: list[Expansion] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    intent: dict[str, Any] | None = None
    boosts: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    @property
    def han_share(self) -> float:
        """Share of the query's letters that are Han characters (0 for an all-Latin query)."""
        return han_share(self.text)

    @property
    def boost_filters(self) -> list[tuple[Any, float]]:
        """`boosts` as (keyword filter, weight) pairs for recall: documents with the value score more."""
        from souk.index.filters import Filter

        return [(Filter(b["field"], "=", (b["value"],)), float(b["weight"])) for b in self.boosts]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["syntax"] = asdict(self.syntax)
        out["filters"] = [str(f) for f in self.filters]
        return out


class Rewriter(Protocol):
    """One query-understanding step: reads the plan, returns it (possibly changed) with a note."""

    def rewrite(self, plan: QueryPlan) -> QueryPlan: ...


# name -> factory(searcher, options) -> Rewriter; the name is what `[query] steps` lists
RewriterFactory = Callable[[Any, dict[str, Any]], Rewriter]
QUERY_STEPS: Registry[RewriterFactory] = Registry("query_step", optional={  # each imported only when named
    "spell": "souk.query.spell", "synonyms": "souk.query.synonyms", "keywords": "souk.query.keywords",
    "intent": "souk.query.intent.rewriter", "entities": "souk.query.entities.rewriter"})


class Planner:
    """Builds a QueryPlan with the configured rewriters, in order; built once per searcher."""

    def __init__(self, searcher: Any, steps: Sequence[str] = ("syntax",),
                 options: dict[str, dict[str, Any]] | None = None):
        unknown = [s for s in steps if s not in QUERY_STEPS]
        if unknown:
            raise ConfigError(f"query.steps: unknown step {unknown[0]!r}; known: {', '.join(QUERY_STEPS.names())}")
        options = options or {}
        self.steps = list(steps)
        self.rewriters = [(s, QUERY_STEPS.get(s)(searcher, dict(options.get(s, {})))) for s in steps]

    def plan(self, text: str, filters: Sequence[Any] = ()) -> QueryPlan:
        plan = QueryPlan(original=text, text=text, normalized=normalize(text), filters=list(filters))
        for name, rewriter in self.rewriters:
            plan = rewriter.rewrite(plan)
            plan.steps.append(name)
        return plan


@QUERY_STEPS.register("syntax")
class SyntaxRewriter:
    """Parses "phrases", +required and -excluded words into `plan.syntax` (the text stays as typed,
    since the keyword index reads the operators itself)."""

    def __init__(self, searcher: Any = None, options: dict[str, Any] | None = None):
        parse_options("query.syntax", options, NoOptions)

    def rewrite(self, plan: QueryPlan) -> QueryPlan:
        plan.syntax = parse_query(plan.text)
        return plan
