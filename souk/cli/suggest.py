"""`souk suggest`: autocomplete completions for a prefix over one index."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from souk.cli.output import console, emit_json


def register(app: typer.Typer) -> None:
    @app.command("suggest")
    def suggest_cmd(
        prefix: str = typer.Argument(..., help="What the user has typed so far (text, pinyin or pinyin initials)."),
        index: Path = typer.Option(..., "--index", help="Index directory."),
        k: int = typer.Option(10, "-k", "--k", min=0, help="Number of completions."),
        log: Optional[Path] = typer.Option(None, "--log",
                                           help="Query log (one query a line, or query<TAB>count, or JSONL)."),
        fields: list[str] = typer.Option([], "--field",
                                         help="Title field; repeatable (default: fields named like title/name)."),
        entity_fields: Optional[list[str]] = typer.Option(None, "--entity-field",
                                                          help="Brand/category field; repeatable (default: by name)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Complete a prefix from titles, catalog entities and a query log (built once per commit, cached)."""
        from souk.indexing import open_index
        from souk.query.suggest import Suggester

        t0 = time.perf_counter()
        suggester = Suggester.build(open_index(index).searcher(), fields or None, entity_fields or None, log)
        t1 = time.perf_counter()
        out = suggester.suggest(prefix, k)
        took = (time.perf_counter() - t1) * 1e3
        if as_json:
            emit_json({"prefix": prefix, "suggestions": [s.to_dict() for s in out], "took_ms": round(took, 3),
                       "load_s": round(t1 - t0, 3), "cached": bool(suggester.info.get("cached")),
                       "completions": suggester.info["completions"]})
            return
        table = Table("completion", "score", "source", "match")
        for s in out:
            table.add_row(s.text, f"{s.score:.1f}", s.source, s.match)
        console.print(table)
        console.print(f"{len(out)} completions in {took:.2f} ms (loaded in {t1 - t0:.2f} s)")
