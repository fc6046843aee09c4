"""The `intent` query step: `plan.intent = {label, confidence, top, field, model}` from an intent model.

```toml
[query]
steps = ["syntax", "intent"]
[query.intent]
model = "intent-1"          # optional; default: the active `intent` model; or a directory, relative to the index
k = 3                       # optional; best classes listed in `top`
```
`field` is the catalog field the labels came from (`souk intent train --index --label-field`), or None
for intents trained from labeled queries. The step only describes the query; turning a confident
category into a filter or boost is the retrieval/ranking configuration's choice.
Misuse: filtering on `label` without looking at `confidence` (an `oos` or unsure guess must not hide hits).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError, ModelUnavailable
from souk.plugins import POSITIVE_INT, parse_options
from souk.query.plan import QUERY_STEPS, QueryPlan

if TYPE_CHECKING:
    pass

STAGE = "intent"


@dataclass
class IntentOptions:
    """`[query.intent]`: `model` (a model directory inside the index; default the active intent model), `k`."""

    model: str | None = None
    k: int = field(default=3, metadata=POSITIVE_INT)


@QUERY_STEPS.register("intent")
class IntentRewriter:
    """Predicts the intent (or category) of `plan.text` once per request (a few ms with MiniLM)."""

    def __init__(self, searcher: Any, options: dict[str, Any] | None = None):
        from souk.models import store
        from souk.query.intent.model import IntentModel

        options = dict(options or {})
        self.k = parse_options("query.intent", options, IntentOptions).k
        index_path = Path(searcher.path)
        path = store.resolve(index_path, STAGE, options.get("model"))
        if path is None:
            raise ConfigError(f"query.intent: {index_path} has no intent model; train one with "
                              f"`souk intent train --index {index_path} --label-field FIELD`")
        self.path = path
        self.note = ""
        self.model: IntentModel | None
        try:
            self.model = store.cached(path, IntentModel.load)
        except ModelUnavailable as e:  # a damaged model: the step is off, searches go on with a note
            self.model, self.field, self.note = None, None, f"query step intent skipped: {e}"
            return
        self.field = self.model.info.get("training", {}).get("label_field")

    def rewrite(self, plan: QueryPlan) -> QueryPlan:
        if self.model is None:
            plan.notes.append(self.note or "query step intent skipped")
            return plan
        if plan.text.strip():
            prediction = self.model.predict([plan.text], k=self.k)[0]
            plan.intent = {**prediction.to_dict(), "field": self.field, "model": self.path.name}
        return plan
