"""The typed index config, checked as a whole: schema, search, analysis, pipelines and query.

`Schema.from_dict` checks fields, search and analysis (the lower layers' sections); `check_config`
adds the sections owned by higher layers (pipelines and query steps), so a typo such as
`[pipelines.hybird]` or `[query] steps = ["spel"]` is an error naming the key when the index is
created or opened, not at the first search.
"""
from __future__ import annotations

from souk.errors import ConfigError
from souk.query.understand import query_steps
from souk.ranking.pipeline import PRESETS, query_steps_of, stage_specs
from souk.ranking.recall import OPTIONS as RECALL_OPTIONS
from souk.ranking.stage import check_options, stage_names
from souk.schema import Schema


def check_config(schema: Schema) -> Schema:
    """Raise ConfigError (naming the key) for a bad `[pipelines]` or `[query]` section; return the schema."""
    query_steps(schema.query)
    known_stages = stage_names()
    for name, table in schema.pipelines.items():
        if name not in PRESETS and "stages" not in table:
            close = ", ".join(sorted(PRESETS))
            raise ConfigError(f"pipelines.{name}: not a preset ({close}); a new pipeline needs `stages = [...]`")
        steps = query_steps_of(name, schema.pipelines)
        if steps is not None:
            try:
                query_steps({**schema.query, "steps": steps})
            except ConfigError as e:
                raise ConfigError(f"pipelines.{name}.{e}") from None
        specs = stage_specs(name, schema.pipelines)
        for i, spec in enumerate(specs):
            if spec["stage"] not in known_stages:
                raise ConfigError(f"pipelines.{name}.stages[{i}]: unknown stage {spec['stage']!r}; known: "
                                  f"{', '.join(known_stages)}")
        check_options(f"pipelines.{name}.stages[0]", {k: v for k, v in specs[0].items() if k != "stage"},
                      RECALL_OPTIONS)
    return schema
