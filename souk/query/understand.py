"""Query understanding as configured: the `[query]` table of the index config picks the steps.

```toml
[query]
steps = ["syntax", "spell", "synonyms", "entities", "intent"]   # default: ["syntax", "spell"]
match = "relax"                                                  # and minimum_should_match, relax_below:
[query.spell]                                                    # options of one step (see souk.index.matching)
```
`planner_for(searcher)` builds the Planner once per searcher snapshot.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError
from souk.index.matching import KEYS as MATCH_KEYS, match_config
from souk.query.plan import QUERY_STEPS, Planner

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

DEFAULT_STEPS = ("syntax", "spell")
_PLANNERS: "weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], Planner]]" = weakref.WeakKeyDictionary()


def query_steps(config: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Validated steps and per-step options of a `[query]` table; errors name the key."""
    steps = config.get("steps", list(DEFAULT_STEPS))
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ConfigError(f"query.steps: expected a list of step names, got {steps!r}")
    for s in steps:
        if s not in QUERY_STEPS:
            raise ConfigError(f"query.steps: unknown step {s!r}; known: {', '.join(QUERY_STEPS.names())}")
    match_config(config)
    options = {}
    for key, value in config.items():
        if key == "steps" or key in MATCH_KEYS:
            continue
        if key not in QUERY_STEPS:
            known = ", ".join(QUERY_STEPS.names())
            raise ConfigError(f"query.{key}: unknown key; expected `steps`, {', '.join(MATCH_KEYS)} "
                              f"or a step name ({known})")
        if not isinstance(value, dict):
            raise ConfigError(f"query.{key}: expected a table of options, got {value!r}")
        options[key] = value
    return steps, options


def planner_for(searcher: Searcher, steps: list[str] | None = None) -> Planner:
    """The planner of this searcher's index config, or with other `steps` (built once per searcher)."""
    config = dict(searcher.schema.query)
    if steps is not None:
        config["steps"] = steps
    steps, options = query_steps(config)
    per_searcher = _PLANNERS.setdefault(searcher, {})
    key = tuple(steps)
    if key not in per_searcher:
        per_searcher[key] = Planner(searcher, steps, options)
    return per_searcher[key]
