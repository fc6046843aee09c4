"""`souk keywords`: reduce an over-long query to its keywords."""
from __future__ import annotations

import typer

from souk.cli.output import console, emit_json


def register(app: typer.Typer) -> None:
    @app.command("keywords")
    def keywords_cmd(
        text: str = typer.Argument(..., help="Query text."),
        max_terms: int = typer.Option(8, "--max-terms", min=1, help="Keep at most this many keywords."),
        longer_than: int = typer.Option(12, "--longer-than", min=1, help="Only queries of more terms are reduced."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Keywords of a long query (jieba POS/IDF for Chinese, stopwords and head noun for English)."""
        from souk.query.keywords import reduce

        result = reduce(text, max_terms, longer_than)
        if as_json:
            emit_json(result.to_dict())
            return
        if not result.reduced:
            console.print(f"{result.terms} terms, not reduced (limit {longer_than}): {text}")
            return
        console.print(f"[bold]{result.reduced_text}[/bold]")
        console.print(f"dropped: {' '.join(result.dropped)}")
