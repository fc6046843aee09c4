"""The `intent` query step: `plan.intent = {label, confidence, top, field, model}` from an intent model.

```toml
[query]
steps = ["syntax", "intent"]
[query.intent]
model = "models/intent-1"   # optional; default: the index's active `intent` model; relative to the index
k = 3                       # optional; best classes listed in `top`
```
`field` is the catalog field the labels came from (`souk intent train --index --label-field`), or None
for intents trained from labeled queries. The step only describes the query; turning a confident
category into a filter or boost is the retrieval/ranking configuration's choice.
Misuse: filtering on `label` without looking at `confidence` (an `oos` or unsure guess must not hide hits).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from souk.errors import ConfigError, ModelUnavailable
from souk.query.plan import QueryPlan, register_rewriter

if TYPE_CHECKING:
    from souk.index.searcher import Searcher

STAGE = "intent"
OPTIONS = {"model", "k"}


@register_rewriter("intent")
class IntentRewriter:
    """Predicts the intent (or category) of `plan.text` once per request (a few ms with MiniLM)."""

    def __init__(self, searcher: Searcher, options: dict[str, Any] | None = None):
        from souk.models.store import ModelStore
        from souk.query.intent.model import IntentModel

        options = dict(options or {})
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise ConfigError(f"query.intent.{unknown[0]}: unknown option; known: {', '.join(sorted(OPTIONS))}")
        self.k = options.get("k", 3)
        if not isinstance(self.k, int) or self.k < 1:
            raise ConfigError(f"query.intent.k: expected a positive integer, got {self.k!r}")
        index_path = Path(searcher.path)
        path = index_path / options["model"] if "model" in options else ModelStore(index_path).active(STAGE)
        if path is None:
            raise ConfigError(f"query.intent: {index_path} has no intent model; train one with "
                              f"`souk intent train --index {index_path} --label-field FIELD`")
        self.path = path
        self.note = None
        try:
            self.model: IntentModel | None = IntentModel.load(path)
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
