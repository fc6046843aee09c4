"""`souk schema infer CATALOG`: the schema souk would infer, as a TOML file to edit and pass to --schema."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Optional

import typer

from souk.catalogs import detect_format, read_catalog
from souk.cli.catalog import INFER_SAMPLE, parse_columns
from souk.cli.output import emit_json, err_console
from souk.schema import Inference, beir_schema, infer, to_toml

schema_app = typer.Typer(no_args_is_help=True, help="Schemas: infer one from a catalog, as TOML.")


def register(app: typer.Typer) -> None:
    app.add_typer(schema_app, name="schema")


@schema_app.command("infer")
def infer_cmd(
    data: Path = typer.Argument(..., help="Catalog: .jsonl, .json, .csv, .tsv or a BEIR directory."),
    columns: Optional[str] = typer.Option(None, "--columns",
                                          help="Names of the columns of a CSV/TSV without a header row: a,b,c."),
    id_field: Optional[str] = typer.Option(None, "--id",
                                           help="The id field (default: _id, id, code, sku, ... by name)."),
    sample: int = typer.Option(INFER_SAMPLE, "--sample", min=1, help="Records to infer from (the first N)."),
    as_json: bool = typer.Option(False, "--json", help="Print {schema, notes} as one JSON object instead of TOML."),
) -> None:
    """Print the schema `souk index` would infer for CATALOG, as TOML (notes on guesses as comments)."""
    cols = parse_columns(columns)
    if detect_format(data) == "beir" and cols is None and id_field is None:
        inference = Inference(beir_schema())
        unreadable = []
    else:
        head = list(itertools.islice(read_catalog(data, columns=cols), sample))
        unreadable = [r for r in head if r.data is None]
        inference = infer([r.data for r in head if r.data is not None], id_field=id_field)
        if cols:
            data_ = inference.schema.to_dict()
            data_["catalog"] = {"columns": cols}
            inference.schema = type(inference.schema).from_dict(data_, origin="inferred schema")
    notes = list(inference.notes)
    if unreadable:
        first = unreadable[0]
        notes.append(f"{len(unreadable)} of the first {len(head)} records could not be read "
                     f"(line {first.line}: {first.error})")
    if as_json:
        emit_json({"schema": inference.schema.to_dict(), "notes": notes})
        return
    for note in notes:
        err_console.print(f"[yellow]note[/]: {note}", markup=False, highlight=False)
    header = [f"schema inferred by souk from the first {sample} records of {data}"] + [f"note: {n}" for n in notes]
    typer.echo(to_toml(inference.schema, header), nl=False)
