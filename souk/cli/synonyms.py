"""`souk synonyms ...`: check a synonym file, show a query's expansions, mine candidate pairs for review."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from souk.cli.output import console, emit_json, err_console

synonyms_app = typer.Typer(no_args_is_help=True, help="Synonym files: check, expand, mine candidates for review.")


def register(app: typer.Typer) -> None:
    app.add_typer(synonyms_app, name="synonyms")


@synonyms_app.command("check")
def check_cmd(file: Path = typer.Argument(..., help="Synonym file (.toml, or Solr-style .txt)."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Parse a synonym file and count its rules per language (errors name the rule)."""
    from souk.query.synonyms import Synonyms

    syn = Synonyms.load(file)
    by_language = Counter(r.language for r in syn.rules)
    one_way = sum(not r.equivalent for r in syn.rules)
    result = {"file": str(file), "rules": len(syn), "one_way": one_way, "languages": dict(sorted(by_language.items()))}
    if as_json:
        emit_json(result)
        return
    console.print(f"{file}: {len(syn)} rules ({one_way} one-way); "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(by_language.items())))


@synonyms_app.command("expand")
def expand_cmd(query: str = typer.Argument(..., help="Query text."),
               file: Optional[Path] = typer.Option(None, "--file", help="Synonym file (default: the shipped set)."),
               languages: Optional[list[str]] = typer.Option(None, "--language",
                                                             help="Only these sections (plus 'any'); repeatable."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """The optional, lower-weight terms a query gains from a synonym file."""
    from souk.query.synonyms import Synonyms

    expansions = Synonyms.load(file).expand(query, languages or None)
    if as_json:
        emit_json({"query": query, "expansions": [e.to_dict() for e in expansions]})
        return
    table = Table("matched", "expansion", "weight", "rule")
    for e in expansions:
        table.add_row(e.matched, e.text, f"{e.weight:g}", e.rule)
    console.print(table)


@synonyms_app.command("mine")
def mine_cmd(
    index: Path = typer.Option(..., "--index", help="Index whose titles are mined."),
    log: Optional[Path] = typer.Option(None, "--log", help="Query log (one query a line, query<TAB>count, or JSONL)."),
    top: int = typer.Option(50, "--top", min=1, help="Number of candidate pairs listed."),
    fields: list[str] = typer.Option([], "--field", help="Text field to mine; repeatable (default: title fields)."),
    file: Optional[Path] = typer.Option(None, "--synonyms",
                                        help="Synonym file whose pairs count as known (default: shipped)."),
    min_count: int = typer.Option(5, "--min-count", min=1, help="Words seen fewer times are ignored."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1,
                                         help="word2vec epochs (default: 5-50 by corpus size)."),
    workers: int = typer.Option(1, "--workers", min=1, help="word2vec threads (1 is deterministic)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Propose candidate synonym pairs for review; nothing is applied until a person adds them to a file."""
    from souk.indexing import open_index
    from souk.query import documents
    from souk.query.querylog import read_query_log
    from souk.query.synonym_mining import MiningConfig, mine_pairs
    from souk.query.synonyms import Synonyms

    searcher = open_index(index).searcher()
    names = documents.check_fields(searcher.schema, fields) if fields else documents.title_fields(searcher.schema)
    titles = [v for doc in documents.field_values(searcher, names) for n in names for v in doc[n]]
    queries = list(read_query_log(log)) if log else []
    known = Synonyms.load(file).pairs()
    config = MiningConfig(min_count=min_count, epochs=epochs, workers=workers)
    err_console.print(f"mining {len(titles)} texts from {', '.join(names)}"
                      + (f" and {len(queries)} queries" if queries else ""))
    result = mine_pairs(titles, queries, top, config, known)
    if as_json:
        emit_json({**result.to_dict(), "fields": names, "applied": False})
        return
    table = Table("a", "b", "score", "cosine", "context", "together", "gap", "spelling", "count a", "count b")
    for p in result.pairs:
        table.add_row(p.a, p.b, f"{p.score:.3f}", f"{p.cosine:.2f}", f"{p.context:.2f}", f"{p.together:.2f}",
                      f"{p.gap:.2f}", f"{p.spelling:.2f}", str(p.count_a), str(p.count_b))
    console.print(table)
    console.print(f"{result.texts} texts, {result.vocab} words, trained in {result.train_s}s; "
                  f"known pairs found again: {len(result.known_found)}. Nothing applied: add the pairs you accept "
                  "to a synonym file (see souk/query/synonyms.py for the format).")
