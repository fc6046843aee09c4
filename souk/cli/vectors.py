"""`souk vectors status|rebuild`: a vector field kept in another service (Milvus) and the index's commits;
and the `souk index` options that put a new index's vector field there."""
from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from souk.cli.options import IndexOpt, JsonOpt
from souk.cli.output import console, emit_json
from souk.errors import ConfigError
from souk.indexing import rebuild_vectors, vector_status

vectors_app = typer.Typer(no_args_is_help=True,
                          help="Vector fields kept outside the index (Milvus): status and rebuild.")


def vector_options(index: Path, vectors: bool, backend: str | None, uri: str | None,
                   collection: str | None) -> dict | None:
    """The vector field params `souk index --vector-backend/--vector-uri/--vector-collection` ask for."""
    if not vectors:
        if backend or uri or collection:
            raise ConfigError("--vector-backend, --vector-uri and --vector-collection apply with --vectors only")
        return None
    if backend is None:
        if uri or collection:
            raise ConfigError("--vector-uri and --vector-collection need --vector-backend milvus")
        return None
    params: dict = {"index": backend}
    if backend == "milvus":
        if not uri:
            raise ConfigError("--vector-backend milvus needs --vector-uri: a local FILE.db (Milvus Lite) or http://host:19530")
        name = re.sub(r"[^A-Za-z0-9_]", "_", Path(index).resolve().name)[:60]
        params.update(uri=uri, collection=collection or f"souk_{name}_{uuid.uuid4().hex[:8]}")
    elif uri or collection:
        raise ConfigError(f"--vector-uri and --vector-collection apply to --vector-backend milvus, not {backend}")
    return params


FieldOpt = Annotated[Optional[str], typer.Option("--field", help="Vector field (default: the one kept in Milvus).")]


def _field_command(name: str, run: Callable[[Path, Optional[str]], dict], line: Callable[[dict], str],
                   doc: str) -> None:
    """Register `souk vectors NAME --index DIR [--field F] [--json]`: `run` gives the result, `line` says it."""

    def command(index: IndexOpt, field: FieldOpt = None, as_json: JsonOpt = False) -> None:
        result = run(index, field)
        if as_json:
            emit_json(result)
        else:
            console.print(line(result))

    command.__doc__ = doc
    vectors_app.command(name)(command)


def _status_line(result: dict) -> str:
    state = "in step" if result["in_step"] else "NOT in step: run `souk vectors rebuild`"
    return (f"{result['field']} -> Milvus collection {result['collection']}: {result['rows']} rows, "
            f"commit {result['milvus_commit']} (index: {result['index_commit']}), {state}")


def _rebuild(index: Path, field: Optional[str]) -> dict:
    from souk.progress import progress_bar

    with progress_bar("sending vectors", None) as advance:
        return rebuild_vectors(index, field, progress=advance)


def register(app: typer.Typer) -> None:
    app.add_typer(vectors_app, name="vectors")

    _field_command("status", vector_status, _status_line,
                   "Is the Milvus collection at the index's last commit? (rows, commit stamps, mirrored fields)")
    _field_command("rebuild", _rebuild, lambda r: f"{r['vectors']} vectors of {r['field']} sent to Milvus collection "
                   f"{r['collection']} at commit {r['commit']} in {r['seconds']}s",
                   "Drop and refill the Milvus collection from the index's last commit "
                   "(after drift or a mirror change).")

    @vectors_app.command("move")
    def move_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory."),
        backend: str = typer.Option(..., "--backend", help="milvus, or a local kind: flat, hnsw, ivfpq, sq8."),
        uri: Optional[str] = typer.Option(None, "--uri", help="With milvus: a local FILE.db (Milvus Lite) or http://host:19530."),
        collection: Optional[str] = typer.Option(None, "--collection",
                                                 help="With milvus: the collection (default: "
                                                      "souk_<index name>_<random>)."),
        field: Optional[str] = typer.Option(None, "--field", help="Vector field (default: the only one)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Keep a vector field's vectors in another backend (e.g. an index outgrowing one machine moves to
        Milvus); nothing is re-encoded."""
        from souk.indexing import move_vectors
        from souk.progress import progress_bar

        params = vector_options(index, True, backend, uri, collection) or {}
        with progress_bar("sending vectors", None) as advance:
            result = move_vectors(index, backend, params.get("uri"), params.get("collection"), field, progress=advance)
        if as_json:
            emit_json(result)
            return
        console.print(f"vector field {result['field']}: {result['from']} -> {result['to']}")
