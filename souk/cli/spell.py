"""`souk spell`: what would the speller do with this query? (the correction, runners-up and the decision)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from souk.cli.output import console, emit_json


def register(app: typer.Typer) -> None:
    """Add the `spell` command to `app`."""
    app.command("spell")(spell_command)


def spell_command(
    query: str = typer.Argument(..., help="Query text as a shopper typed it."),
    index: Path = typer.Option(..., "--index", help="Index directory (its vocabulary is cached per commit)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Query log, one query a line: adds query-side frequencies."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object as the last line."),
) -> None:
    """Correct a query against an index: "did you mean", compounds, pinyin; units and brands left alone."""
    from souk.indexing import open_index
    from souk.query.lexicon import load_lexicon
    from souk.query.spell import Speller, correction_hits, decide

    searcher = open_index(index).searcher()
    lexicon = load_lexicon(searcher, progress=True)
    if log is not None:
        lexicon = lexicon.with_log(log)
    correction = Speller(lexicon).correct(query)
    result = correction.to_dict()
    if correction.changed:
        typed_hits, corrected_hits = correction_hits(searcher, lexicon, correction)
        result["hits"] = {"query": typed_hits, "corrected": corrected_hits}
        result["decision"] = decide(typed_hits, corrected_hits)
    else:
        result["decision"] = "none"
    if as_json:
        emit_json(result)
        return
    if not correction.changed:
        console.print(f"no correction for {query!r}")
    else:
        verb = "searching for" if result["decision"] == "rewrite" else "did you mean"
        console.print(f"{verb}: [bold]{correction.corrected}[/] (hits {result['hits']['query']} -> "
                      f"{result['hits']['corrected']})")
        for edit in correction.edits:
            console.print(f"  {edit.kind}: {edit.original} -> {edit.replacement}")
    for text, score in correction.candidates:
        console.print(f"  {score:.4f}  {text}")
