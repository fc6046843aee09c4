"""Intent / category prediction: which intent (or catalog category) a query asks for, or `oos`.

`IntentModel.train(read_labeled_tsv(path))` or `IntentModel.from_catalog(searcher, "category")`, then
`model.predict(["query"])` -> `[Prediction(label, confidence, top)]`; `save`/`load` a model directory.
"""
from souk.query.intent.data import OOS, LabeledQueries, catalog_queries, read_labeled_tsv
from souk.query.intent.model import KIND, IntentConfig, IntentModel, Prediction
from souk.query.intent.threshold import ThresholdChoice, choose_threshold, decide

__all__ = ["KIND", "OOS", "IntentConfig", "IntentModel", "LabeledQueries", "Prediction", "ThresholdChoice",
           "catalog_queries", "choose_threshold", "decide", "read_labeled_tsv"]
