"""`souk vectors status|rebuild`: a vector field kept in another service (Milvus) and the index's commits;
and the `souk index` options that put a new index's vector field there."""
from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import typer

from souk.cli.output import console, emit_json
from souk.errors import ConfigError

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


@contextlib.contextmanager
def ray_encoding(index, address: str | None) -> Iterator[Callable[[Iterable], Iterable]]:
    """For `--ray`: records passed through the returned function get their vectors computed on Ray
    (identity without --ray)."""
    if not address:
        yield lambda records: records
        return
    if not index.schema.vector_fields:
        raise ConfigError("--ray encodes vectors: it applies to an index with a vector field (--vectors)")
    from souk.index.vectors.ray_encoding import RayEncoding, ray_cluster

    with ray_cluster(address), RayEncoding(index) as encoding:
        yield encoding.records


def register(app: typer.Typer) -> None:
    app.add_typer(vectors_app, name="vectors")

    @vectors_app.command("status")
    def status_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory."),
        field: Optional[str] = typer.Option(None, "--field", help="Vector field (default: the one kept in Milvus)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Is the Milvus collection at the index's last commit? (rows, commit stamps, mirrored fields)"""
        from souk.index.vectors.milvus import status

        result = status(index, field)
        if as_json:
            emit_json(result)
            return
        state = "in step" if result["in_step"] else "NOT in step: run `souk vectors rebuild`"
        console.print(f"{result['field']} -> Milvus collection {result['collection']}: {result['rows']} rows, "
                      f"commit {result['milvus_commit']} (index: {result['index_commit']}), {state}")

    @vectors_app.command("rebuild")
    def rebuild_cmd(
        index: Path = typer.Option(..., "--index", help="Index directory."),
        field: Optional[str] = typer.Option(None, "--field", help="Vector field (default: the one kept in Milvus)."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Drop and refill the Milvus collection from the index's last commit (after drift or a mirror change)."""
        from souk.index.vectors.milvus import rebuild
        from souk.progress import progress_bar

        with progress_bar("sending vectors", None) as advance:
            result = rebuild(index, field, progress=advance)
        if as_json:
            emit_json(result)
            return
        console.print(f"{result['vectors']} vectors of {result['field']} sent to Milvus collection "
                      f"{result['collection']} at commit {result['commit']} in {result['seconds']}s")

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
        from souk.index.vectors.milvus import move
        from souk.progress import progress_bar

        params = vector_options(index, True, backend, uri, collection) or {}
        with progress_bar("sending vectors", None) as advance:
            result = move(index, backend, params.get("uri"), params.get("collection"), field, progress=advance)
        if as_json:
            emit_json(result)
            return
        console.print(f"vector field {result['field']}: {result['from']} -> {result['to']}")
