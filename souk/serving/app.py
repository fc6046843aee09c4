"""The HTTP API (FastAPI): search, documents, suggest, health, metrics and the search page.

Every route goes through the same `Engine` the CLI uses, loaded once per process and warmed at start.
Errors are JSON `{"error", "kind"}` with a 4xx status naming the problem; a SoukError is never a 500.
Misuse: exposing a server without keys beyond loopback (`souk serve` refuses).
"""

import json
import logging
import os
import re
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from souk.engine import MAX_K, Engine
from souk.ranking.pipeline import pipeline_names
from souk.errors import (ConfigError, DocumentError, IndexStateError, ModelError, QueryError, SoukError,
                         Unavailable)
from souk.limits import MAX_BATCH, MAX_BODY_BYTES, MAX_PAGE_SIZE, MAX_SEARCH_BODY_BYTES
from souk.schema import loads_json
from souk.serving.auth import Keys
from souk.serving.display import display_config
from souk.serving.guard import JSON_TYPES, NDJSON_TYPES, Guard, HostPolicy, Route, error_body, request_id
from souk.serving.events import Experiment, Exploration, events_router
from souk.serving.metrics import Metrics

log = logging.getLogger("souk.serving")
STATIC = Path(__file__).parent / "static"
_STATUS = [(DocumentError, 422), (QueryError, 400), (Unavailable, 400), (ConfigError, 503), (ModelError, 503),
           (IndexStateError, 503)]
# errors about the request itself are shown; the others may carry paths or file contents of the server,
# so the client gets what failed and a request id, and the server log gets the message
_SHOWN = (DocumentError, QueryError, Unavailable)  # (Unavailable: a pipeline this index cannot run, and why)
_HIDDEN = {"ConfigError": "the index configuration", "ModelError": "a model", "IndexStateError": "the index on disk",
           "DatasetError": "a data file"}
_PATHS = re.compile(r"""(?<![^\s'"(=:,])(?:[A-Za-z]:)?(?:/[^\s/'"]+){2,}/?""")


class SearchBody(BaseModel):
    """POST /search: the same fields as GET /search's parameters."""

    model_config = ConfigDict(extra="forbid")
    q: str = Field("", max_length=1000)
    filters: list[str] = Field(default_factory=list, max_length=32)
    facets: list[str] = Field(default_factory=list, max_length=32)
    sort: str | None = None
    page: int = Field(1, ge=1, le=10_000)
    size: int = Field(10, ge=0, le=MAX_PAGE_SIZE)
    pipeline: str | None = None  # None: "keyword", or the running experiment's interleaving (souk.serving.events)
    explain: bool = False
    collapse: str | None = None
    session: str | None = Field(None, max_length=64)


def create_app(index_path: str | Path, keys: Keys | None = None, cors_origins: list[str] | None = None,
               warm: tuple[str, ...] = ("keyword",), hosts: HostPolicy | None = None, experiment: Any = None,
               exploration: Any = None) -> FastAPI:
    """The API over one index; pipelines in `warm` are built and run once before the first request.

    `hosts`: the Host header values answered (None: any; `app_from_env` passes the bound address);
    `experiment`: the interleaving experiment run on searches that name no pipeline, `exploration` the
    exploration of the others (souk.serving.events)."""
    keys = keys or Keys()
    engine = Engine.open(index_path)
    for name in warm:
        try:
            engine.search("warm up", pipeline=name, k=1, record=False, suggest_instead=False)
        except (ModelError, ConfigError) as e:  # a damaged model: that pipeline is off, keyword search is not
            log.warning("souk serve: pipeline %s not warmed: %s", name, e)
    engine.suggest("warm")
    engine.measure_in_background()  # a cross-encoder never measured here: its fastest path found while serving
    metrics = Metrics()
    pipelines = engine.available_pipelines()
    for name, why in engine.off.items():
        log.warning("souk serve: pipeline %s is off or partial: %s", name, why)
    app = FastAPI(title="souk", description="Search API of one souk index.", version=_version())
    app.state.engine = engine
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    routes = {"/search": Route(MAX_SEARCH_BODY_BYTES, JSON_TYPES)}
    app.add_middleware(Guard, metrics=metrics, keys=keys, hosts=hosts, cors_origins=cors_origins or [],
                       routes=routes, default=Route(MAX_BODY_BYTES, JSON_TYPES | NDJSON_TYPES))
    scrub = _scrubber(engine.index.path)

    @app.exception_handler(SoukError)
    async def souk_error(request: Request, exc: SoukError):
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)
        kind = type(exc).__name__
        if isinstance(exc, _SHOWN):
            body = error_body(scrub(str(exc)), kind, request.scope)
        else:
            log.warning("request %s: %s: %s", request_id(request.scope), kind, exc)
            what = _HIDDEN.get(kind, "the server")
            body = error_body(f"{what} has a problem; the server log has the details under this request_id", kind,
                              request.scope)
        if isinstance(exc, DocumentError):
            body["problems"] = [{"record": line, "field": f, "message": scrub(m)} for line, f, m in exc.problems[:100]]
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(error_body(f"{where}: {first.get('msg', 'invalid request')}", "ValidationError",
                                       request.scope), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("request %s: unexpected error on %s %s", request_id(request.scope), request.method,
                      request.url.path)
        return JSONResponse(error_body("internal error; the server log has it under this request_id", "InternalError",
                                       request.scope), status_code=500)

    async def role(authorization: Annotated[str | None, Header()] = None) -> str:
        if not keys.enabled:
            return "admin"
        found = keys.role(authorization)
        if found is None:
            raise HTTPException(401, "missing or wrong API key: send Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})
        return found

    async def admin(who: Annotated[str, Depends(role)]) -> str:
        if who != "admin":
            raise HTTPException(403, "this key may only search; writes need the admin key",
                                headers={"Connection": "close"})
        return who

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(error_body(str(exc.detail), "HTTPError", request.scope), status_code=exc.status_code,
                            headers=exc.headers)

    known_pipelines = set(pipeline_names(engine.index.schema.pipelines))

    async def run_search(body: SearchBody) -> JSONResponse:
        # a client's typo, told apart from a broken configured pipeline
        if body.pipeline is not None and body.pipeline not in known_pipelines:
            raise QueryError(f"unknown pipeline {body.pipeline[:60]!r}; known pipelines: "
                             f"{', '.join(sorted(known_pipelines))}")
        schema = engine.index.schema
        for name, kinds in [(body.sort.lstrip("+-") if body.sort else None, ("number",))] + [
            (f, ("keyword", "number")) for f in body.facets
        ]:
            if name is not None:
                try:
                    schema.field(name, kinds=kinds)
                except ConfigError as e:
                    raise QueryError(f"{'sort' if kinds == ('number',) else 'facet'}: {e}") from None
        # about a millisecond: on the event loop, no thread hand-off
        if engine.is_lexical(body.pipeline or "keyword") and (body.pipeline or experiment is None):
            return page_of(body)
        return await run_in_threadpool(page_of, body)

    def page_of(body: SearchBody) -> JSONResponse:
        search = (
            partial(experiment.search, engine)
            if body.pipeline is None and experiment is not None and experiment.takes()
            else partial(exploration.search, engine)
            if body.pipeline is None and exploration is not None and exploration.takes()
            else partial(engine.search, pipeline=body.pipeline or "keyword")
        )
        result = search(body.q, filters=body.filters, facets=body.facets, sort=body.sort, k=body.size,
                        offset=(body.page - 1) * body.size, explain=body.explain, collapse=body.collapse,
                        session=body.session)
        # a plain JSON response: the result is JSON-ready, so FastAPI's per-value encoder walk is skipped;
        # X-Souk-Commit: for replicas behind a balancer, which snapshot answered
        return JSONResponse({**result.to_dict(), "page": body.page, "size": body.size},
                            headers={"X-Souk-Commit": engine.searcher().commit_id})

    @app.get("/search", summary="Search (query parameters)")
    async def search_get(
        _: Annotated[str, Depends(role)],
        q: Annotated[str, Query(max_length=1000)] = "",
        filter: Annotated[list[str], Query(max_length=32)] = [],  # noqa: B006 (FastAPI copies defaults)
        facet: Annotated[list[str], Query(max_length=32)] = [],  # noqa: B006
        sort: str | None = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        size: Annotated[int, Query(ge=0, le=MAX_PAGE_SIZE)] = 10,
        pipeline: str | None = None,
        explain: bool = False,
        collapse: str | None = None,
        session: Annotated[str | None, Query(max_length=64)] = None,
    ) -> JSONResponse:
        return await run_search(SearchBody(q=q, filters=filter, facets=facet, sort=sort, page=page, size=size,
                                     pipeline=pipeline, explain=explain, collapse=collapse, session=session))

    @app.post("/search", summary="Search (JSON body)")
    async def search_post(body: SearchBody, _: Annotated[str, Depends(role)]) -> JSONResponse:
        return await run_search(body)

    @app.post(
        "/documents",
        summary="Upsert a batch (JSON array or NDJSON), acknowledged once committed",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "array",
                            "maxItems": MAX_BATCH,
                            "items": {"type": "object", "description": "a document keyed by the schema's id field"},
                        }
                    },
                    "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON document a line"}},
                },
            }
        },
    )
    async def documents_post(request: Request, _: Annotated[str, Depends(admin)],
                             on_error: Annotated[str, Query(pattern="^(fail|skip)$")] = "fail") -> dict[str, Any]:
        body = bytearray()
        async for chunk in request.stream():  # through the Guard's counter: over the limit is a 413 mid-stream
            body += chunk
        records = _records(bytes(body), request.headers.get("content-type", ""), skip=on_error == "skip")
        del body
        return await run_in_threadpool(engine.write, records, on_error=on_error)  # searches go on meanwhile

    @app.delete("/documents/{doc_id:path}",
                summary="Delete one document (ids may hold '/'), acknowledged once committed; "
                "`deleted` is 1 when the id existed, 0 when it did not")
    def documents_delete(doc_id: str, _: Annotated[str, Depends(admin)]) -> dict[str, Any]:
        return engine.write([], delete=[doc_id])

    @app.get("/suggest", summary="Autocomplete: completions for a typed prefix")
    def suggest(_: Annotated[str, Depends(role)], q: Annotated[str, Query(max_length=200)] = "",
                k: Annotated[int, Query(ge=1, le=50)] = 8) -> dict[str, Any]:
        return {"query": q, "suggestions": engine.suggest(q, k)}

    @app.get("/health")
    async def health() -> dict[str, Any]:  # on the event loop: it answers while threads rebuild things
        searcher = engine.searcher()
        return {"status": "ok", "docs": searcher.num_docs, "commit": searcher.commit_id,
                "refreshing": engine.refreshing()}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics_text() -> str:
        searcher = engine.searcher()
        size = sum(p.stat().st_size for p in engine.index.path.rglob("*") if p.is_file())
        return metrics.render({"docs": searcher.num_docs, "index_bytes": size})

    @app.get("/config", summary="What the search page needs: fields to facet and sort on, pipelines")
    def config(_: Annotated[str, Depends(role)]) -> dict[str, Any]:
        schema = engine.index.schema
        return {"keyword_fields": [f.name for f in schema.fields.values() if f.kind == "keyword"
                                   and f.name != schema.id_field],
                "number_fields": [f.name for f in schema.fields.values() if f.kind == "number"],
                "text_fields": list(schema.search_fields), "id_field": schema.id_field,
                "pipelines": pipelines, "max_page_size": MAX_PAGE_SIZE, "max_k": MAX_K,
                "suggest": True, **display_config(schema)}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.include_router(events_router(engine, role, admin))  # /events, /experiments, /analytics
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _records(body: bytes, content_type: str, skip: bool = False) -> list[Any]:
    """A JSON array, or NDJSON (one object a line, split on newlines only: a raw U+2028 inside a string
    is text, as in the CLI); errors name the line, and with `skip` a bad line is a rejected record."""
    from souk.catalogs import Record

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise QueryError(f"request body is not UTF-8 ({e})") from None
    if "ndjson" in content_type or "jsonl" in content_type:
        records = []
        for n, line in enumerate(text.split("\n"), 1):
            if line.strip():
                try:
                    records.append(loads_json(line))  # integers out of range: a per-record error
                except (json.JSONDecodeError, RecursionError) as e:
                    if not skip:
                        raise QueryError(f"line {n}: not valid JSON ({e})") from None
                    records.append(Record(len(records) + 1, None, f"line {n}: not valid JSON ({e})"))
    else:
        try:
            records = loads_json(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise QueryError(
                f"request body is not valid JSON ({e}); send a JSON array of documents or NDJSON"
            ) from None
        if not isinstance(records, list):
            raise QueryError("request body must be a JSON array of documents (or NDJSON with Content-Type "
                             "application/x-ndjson)")
    if len(records) > MAX_BATCH:
        raise QueryError(f"batch of {len(records)} documents is over the limit of {MAX_BATCH}; split it")
    return records


def _version() -> str:
    from souk.version import __version__

    return __version__


def _scrubber(index_dir: Path):
    """A function taking paths out of a message shown to a client (a safety net: shown errors are about
    the request, but one quoting a server path must not leak it)."""
    index = str(index_dir)

    def scrub(message: str) -> str:
        return _PATHS.sub("<path>", message.replace(index, "<index>"))

    return scrub


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: the index and options come from SOUK_SERVE_* variables
    (SOUK_SERVE_HOST: the bound address; SOUK_SERVE_ALLOWED_HOSTS: more Host names, `*` for any)."""
    warm = tuple(p for p in os.environ.get("SOUK_SERVE_WARM", "keyword").split(",") if p)
    cors = [o for o in os.environ.get("SOUK_SERVE_CORS", "").split(",") if o]
    names = tuple(h.strip() for h in os.environ.get("SOUK_SERVE_ALLOWED_HOSTS", "").split(",") if h.strip())
    hosts = HostPolicy(os.environ.get("SOUK_SERVE_HOST", "127.0.0.1"), names)
    experiment = Experiment.parse(os.environ.get("SOUK_SERVE_INTERLEAVE", ""),
                                  float(os.environ.get("SOUK_SERVE_SHARE", "1")))
    exploration = Exploration.parse(float(os.environ.get("SOUK_SERVE_EXPLORE", "0")))
    app = create_app(os.environ["SOUK_SERVE_INDEX"], Keys.from_env(), cors, warm, hosts, experiment, exploration)
    import gc

    gc.collect()
    gc.freeze()  # the warmed heap leaves the collector's full passes: shorter GC pauses on the event loop
    return app
