"""`souk ner ...`: train, evaluate and run the query entity recognizers (tagger and gazetteer).

torch, jieba and gensim are imported inside the commands. With `--json` the last stdout line is one
JSON object; progress (loss, dev F1) goes to stderr.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from souk.cli.options import JsonOpt, command_group
from souk.cli.output import console, emit_json, progress_bar
from souk.errors import ConfigError, SoukError

ModelOpt = Annotated[Path, typer.Option("--model", help="Tagger directory written by `souk ner train`.")]

ner_app, register = command_group("ner", "Entities in queries (brands, product types, models): train, evaluate, tag.")


@ner_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", help="Training JSONL: {\"chars\": [...], \"tags\": [...]} (BIO).")],
    dev: Annotated[Path, typer.Option("--dev", help="Dev JSONL (same format): picks the best epoch, stops early.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write (replaced atomically).")],
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Most epochs to run.")] = 30,
    seed: Annotated[int, typer.Option("--seed", help="Seed for weights, batch order and word2vec.")] = 13,
    budget_min: Annotated[Optional[float],
                          typer.Option("--budget-min", min=0.1,
                                       help="Wall-clock minutes for the whole run: no epoch starts that "
                                            "would end past them.")] = None,
    pretrain: Annotated[Optional[list[Path]],
                        typer.Option("--pretrain",
                                     help="Unlabeled text (one title or query a line) for word2vec character and "
                                          "bigram vectors; repeatable.")] = None,
    patience: Annotated[int, typer.Option("--patience", min=1,
                                          help="Epochs without a better dev F1 before stopping.")] = 6,
    threads: Annotated[Optional[int],
                       typer.Option("--threads", min=1, help="torch threads (default: torch's choice).")] = None,
    members: Annotated[int, typer.Option("--members", min=1, max=16,
                                         help="Networks trained from seeds seed, seed+1, ... and ensembled "
                                              "(1: a single network).")] = 3,
    json_output: JsonOpt = False,
) -> None:
    """Train the BiLSTM-CRF entity tagger (an ensemble of seeds); each network keeps its epoch with the
    best dev entity F1."""
    from souk.query.entities.data import read_tagged

    train_set, dev_set = read_tagged(data), read_tagged(dev)  # bad data fails before torch loads
    torch = _torch(threads)
    from souk.training.tagger import TrainConfig, train_tagger

    config = TrainConfig(epochs=epochs, seed=seed, patience=patience, budget_s=budget_min * 60 if budget_min else None,
                         pretrain=[str(p) for p in pretrain or []], members=members)
    per_epoch = -(-len(train_set) // config.batch_size)
    total = None if budget_min else members * epochs * per_epoch  # a budget ends the run at an unknown batch
    with progress_bar("training", total=total) as advance:
        result = train_tagger(train_set, dev_set, config, progress=advance)
    result.tagger.manifest["training"].update(data=str(data), dev=str(dev))
    result.tagger.save(out)
    summary = {"model": str(out), "dev": result.best.dev.to_dict(), "best_epoch": result.best.epoch,
               "epochs_run": len(result.history), "members": members, "seconds": round(result.seconds, 1),
               "sentences": len(train_set), "threads": torch.get_num_threads()}
    if json_output:
        emit_json(summary)
        return
    console.print(f"wrote {out}: dev entity F1 {result.best.dev.f1:.4f} (epoch {result.best.epoch} of "
                  f"{len(result.history)}, {result.seconds:.0f} s)")
    _print_scores(result.best.dev.to_dict())


@ner_app.command("eval")
def eval_command(model: ModelOpt,
                 data: Annotated[Path, typer.Option("--data", help="Gold JSONL: {\"chars\": [...], "
                                                                   "\"tags\": [...]} (BIO).")],
                 json_output: JsonOpt = False) -> None:
    """Entity-level precision, recall and F1 (exact spans, per type) of a tagger on gold data."""
    from souk.query.entities.data import read_tagged
    from souk.query.entities.tagger import Tagger
    from souk.training.tagger import evaluate_tagger

    sentences = read_tagged(data)
    scores = evaluate_tagger(Tagger.load(model), sentences).to_dict()
    if json_output:
        emit_json(scores)
        return
    _print_scores(scores)


@ner_app.command("tag")
def tag_command(
    text: Annotated[str, typer.Argument(help="Query or title text.")],
    model: Annotated[Optional[Path],
                     typer.Option("--model", help="Tagger directory written by `souk ner train`.")] = None,
    gazetteer: Annotated[Optional[Path],
                         typer.Option("--gazetteer", help="Gazetteer JSON written by `souk ner gazetteer`.")] = None,
    min_score: Annotated[float, typer.Option("--min-score", min=0.0, max=1.0,
                                             help="Drop tagger entities less sure than this.")] = 0.0,
    json_output: JsonOpt = False,
) -> None:
    """Print the entities of one text: gazetteer matches first, then tagger entities overlapping none."""
    from souk.query.entities.gazetteer import Gazetteer
    from souk.query.entities.recognize import recognize
    from souk.query.entities.tagger import Tagger

    if model is None and gazetteer is None:
        raise ConfigError("give --model DIR, --gazetteer FILE or both")
    entities = recognize(text, Gazetteer.load(gazetteer) if gazetteer is not None else None,
                         Tagger.load(model) if model is not None else None, min_score)
    if json_output:
        emit_json({"text": text, "entities": [asdict(e) for e in entities]})
        return
    if not entities:
        console.print("no entities")
    for e in entities:
        console.print(f"{e.start:>3}-{e.end:<3} {e.type:<10} {e.text!r} -> {e.value!r}  ({e.source}, {e.score:.2f})")


@ner_app.command("gazetteer")
def gazetteer_command(
    index: Annotated[Path, typer.Option("--index", help="Index directory whose keyword values become entries.")],
    field: Annotated[list[str], typer.Option("--field", help="Keyword field (the entity type); repeatable.")],
    out: Annotated[Path, typer.Option("--out", help="Gazetteer JSON file to write.")],
    aliases: Annotated[Optional[Path],
                       typer.Option("--aliases", help="JSON object {alias: existing value}, e.g. "
                                                      "{\"可口可乐\": \"Coca-Cola\"}.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Build a gazetteer from the values of keyword fields of an index."""
    from souk.indexing import open_index
    from souk.query.entities.gazetteer import Gazetteer

    alias_map = _read_aliases(aliases) if aliases is not None else None
    built = Gazetteer.from_index(open_index(index).searcher(), field, alias_map)
    built.save(out)
    summary = {"gazetteer": str(out), "entries": len(built), "types": built.types}
    if json_output:
        emit_json(summary)
        return
    console.print(f"wrote {out}: {len(built)} entries of {', '.join(built.types)}")


def _torch(threads: int | None):
    """torch, with idle OpenMP threads sleeping instead of spinning: on a busy machine spinning
    threads made small training steps many times slower (must be set before torch loads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch


def _read_aliases(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such aliases file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{path}: expected a JSON object of strings {{alias: existing value}}")
    return data


def _print_scores(scores: dict) -> None:
    from rich.table import Table

    table = Table(title=f"entity F1 {scores['f1']:.4f} (precision {scores['precision']:.4f}, recall "
                        f"{scores['recall']:.4f})")
    for col in ("type", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for kind, s in scores["per_type"].items():
        table.add_row(kind, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"]))
    console.print(table)


__all__ = ["register", "SoukError"]
