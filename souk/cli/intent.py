"""`souk intent train | eval | predict`: intent (or catalog category) prediction with out-of-scope detection.

Heavy imports (sklearn, torch) stay inside the commands. With `--json` the last stdout line is one JSON
object; progress goes to stderr.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from souk.cli.options import JsonOpt, command_group
from souk.cli.output import console, emit_json
from souk.errors import ConfigError

STAGE = "intent"
ModelOpt = Annotated[Path, typer.Option("--model", help="Intent model directory, or an index whose active "
                                                        "intent model to use.")]

intent_app, register = command_group(
    "intent", "Intent / category prediction for queries, with out-of-scope (oos) detection.")


@intent_app.command("train")
def train_command(
    data: Annotated[Optional[Path],
                    typer.Option("--data", help="Labeled queries: TSV text<TAB>intent, `oos` = out of scope.")] = None,
    index: Annotated[Optional[Path],
                     typer.Option("--index", help="Train on a catalog instead: titles as pseudo-queries.")] = None,
    label_field: Annotated[Optional[str],
                           typer.Option("--label-field",
                                        help="With --index: the field holding the label (e.g. category).")] = None,
    label_level: Annotated[int, typer.Option("--label-level", min=1,
                                             help="With --index and a hierarchy field: the category level "
                                                  "to predict (1: top).")] = 1,
    text_fields: Annotated[Optional[list[str]],
                           typer.Option("--text-field",
                                        help="With --index: field(s) used as pseudo-queries (default: the "
                                             "highest-boost text fields).")] = None,
    dev: Annotated[Optional[Path],
                   typer.Option("--dev", help="TSV to report dev metrics on (never used for any choice).")] = None,
    out: Annotated[Optional[Path],
                   typer.Option("--out", help="Model directory to write (with --index: default the "
                                              "index's models/intent-N).")] = None,
    features: Annotated[str, typer.Option("--features",
                                          help="Comma-separated feature blocks: char, minilm.")] = "char,minilm",
    c: Annotated[float, typer.Option("--c", min=1e-6, help="Inverse L2 strength of the logistic regression.")] = 30.0,
    train_oos: Annotated[str, typer.Option("--train-oos", help="oos examples as a class: with, without, auto "
                                                               "(both cross-validated).")] = "with",
    oos_share: Annotated[float, typer.Option("--oos-share",
                                             help="Share of out-of-scope queries assumed in traffic; weighs oos recall "
                                                  "in the threshold choice.")] = 0.2,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds for the threshold.")] = 5,
    threshold: Annotated[Optional[float],
                         typer.Option("--threshold", min=0.0, max=1.0,
                                      help="Fixed oos threshold instead of the cross-validated one.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 13,
    json_output: JsonOpt = False,
) -> None:
    """Train an intent classifier from labeled queries, or a category classifier from a catalog."""
    from souk.query.intent import IntentConfig, IntentModel, read_labeled_tsv
    from souk.query.intent.model import default_features

    if (data is None) == (index is None):
        raise ConfigError("give exactly one of --data FILE.tsv (labeled queries) or --index DIR (catalog categories)")
    if index is not None and not label_field:
        raise ConfigError("--index needs --label-field, the field whose values are the categories (e.g. category)")
    if data is not None and (label_field or text_fields):
        raise ConfigError("--label-field and --text-field go with --index, not --data")
    if data is not None and out is None:
        raise ConfigError("--data needs --out DIR, the model directory to write")
    config = IntentConfig(features=_features(features, default_features()), c=c, train_oos=train_oos,
                          oos_share=oos_share, folds=folds, threshold=threshold, seed=seed)
    dev_set = read_labeled_tsv(dev) if dev is not None else None  # read first: a bad dev file fails before training
    t0 = time.perf_counter()
    if data is not None:
        model = IntentModel.train(read_labeled_tsv(data), config, progress=True)
    else:
        from souk.indexing import open_index

        assert index is not None and label_field is not None  # checked above
        model = IntentModel.from_catalog(open_index(index).searcher(), label_field, text_fields, config, progress=True,
                                         level=label_level)
    train_seconds = time.perf_counter() - t0
    if dev_set is not None:
        from souk.evaluation.intent import evaluate_intents

        model.metrics["dev"] = {**evaluate_intents(model, dev_set), "source": str(dev)}
    if out is not None:
        path = model.save(out)
    else:
        assert index is not None  # --data needs --out
        path = _publish(model, index)
    chosen = model.info["metrics"]["cv"]["with" if model.info["hyper_parameters"]["oos_as_class"] else "without"]
    result = {"model": str(path), "classes": len(model.classes), "threshold": model.threshold,
              "oos_as_class": model.info["hyper_parameters"]["oos_as_class"], "cv": chosen,
              "dev": model.metrics.get("dev"), "train_seconds": round(train_seconds, 1)}
    if json_output:
        emit_json(result)
        return
    oos = ("no oos examples, so every query gets a label" if chosen["oos_recall"] is None
           else f"oos recall {chosen['oos_recall']:.4f}" + (" (no oos examples: held-out classes stood in)"
                                                            if chosen.get("oos_from") == "held-out classes" else ""))
    console.print(f"wrote {path}: {result['classes']} classes, threshold {model.threshold:.3f}, cross-validated "
                  f"in-scope accuracy {chosen['in_scope_accuracy']:.4f}, {oos}, {train_seconds:.0f}s", soft_wrap=True)
    if result["dev"]:
        console.print("dev: " + ", ".join(f"{k} {v:.4f}" for k, v in result["dev"].items() if isinstance(v, float)))


@intent_app.command("eval")
def eval_command(
    model: ModelOpt,
    data: Annotated[Path, typer.Option("--data", help="Labeled queries: TSV text<TAB>intent.")],
    threshold: Annotated[Optional[float],
                         typer.Option("--threshold", min=0.0, max=1.0,
                                      help="Override the model's oos threshold.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Accuracy, in-scope accuracy, oos recall and macro-F1 of a model on labeled queries."""
    from souk.evaluation.intent import evaluate_intents
    from souk.query.intent import IntentModel, read_labeled_tsv

    labeled = read_labeled_tsv(data)
    loaded = IntentModel.load(_model_dir(model))
    t0 = time.perf_counter()
    result = evaluate_intents(loaded, labeled, threshold)
    result["ms_per_query"] = round((time.perf_counter() - t0) * 1e3 / len(labeled), 3)
    if json_output:
        emit_json(result)
        return
    console.print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))


@intent_app.command("predict")
def predict_command(
    model: ModelOpt,
    queries: Annotated[list[str], typer.Argument(help="Query text(s).")],
    k: Annotated[int, typer.Option("--k", min=1, help="How many best classes to list.")] = 3,
    json_output: JsonOpt = False,
) -> None:
    """The intent of each query (`oos` when out of scope), with its confidence and the best classes."""
    from souk.query.intent import IntentModel

    loaded = IntentModel.load(_model_dir(model))
    predictions = loaded.predict(queries, k=k)
    if json_output:
        emit_json({"threshold": loaded.threshold,
                   "predictions": [{"query": q, **p.to_dict()} for q, p in zip(queries, predictions)]})
        return
    for q, p in zip(queries, predictions):
        others = ", ".join(f"{label} {prob:.3f}" for label, prob in p.top)
        console.print(f"{q} -> [bold]{p.label}[/bold] ({p.confidence:.3f}; {others})", highlight=False, soft_wrap=True)


def _features(spec: str, defaults: dict[str, dict]) -> dict[str, dict]:
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in defaults]
    if unknown or not names:
        raise ConfigError(f"--features: unknown block {unknown[0]!r}; known: {', '.join(defaults)}" if unknown
                          else f"--features: name at least one of {', '.join(defaults)}")
    return {n: defaults[n] for n in names}


def _publish(model, index: Path) -> Path:
    """Publish into the index's model store as the active `intent` model."""
    from souk.models.store import ModelStore

    store = ModelStore(index)
    workdir = store.new(STAGE)
    model.write_files(workdir)
    return store.publish(STAGE, workdir, model.manifest())


def _model_dir(path: Path) -> Path:
    """A model directory as given, or the active intent model of an index directory."""
    from souk.errors import ModelError
    from souk.models.store import read_model_manifest, resolve
    from souk.query.intent import KIND

    try:
        if read_model_manifest(path).get("kind") == KIND or not (path / "models").is_dir():
            return path
    except ModelError:
        return path  # loading says what is wrong with it
    active = resolve(path, STAGE)
    if active is None:
        raise ModelError(f"{path} has no active intent model; train one with souk intent train --index "
                         f"{path} --label-field FIELD")
    return active
