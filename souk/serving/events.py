"""HTTP routes of the traffic loop: `POST /events`, `GET /experiments`, `/analytics`, and interleaved searches.

`POST /events` (search or admin key) takes one event or an array (`search_id`, `type` click|cart|purchase,
`id`, optional 1-based `position` and `session`) and answers 202 once they are fsynced into the index's
event log; an unknown search id or type is a 400 naming it. `GET /experiments` (admin key) reports the
interleaved experiments, `GET /analytics` is the admin page (its data at `GET /analytics/data`, admin key).
`Experiment` runs team-draft interleaving of two pipelines on a share of the searches that name no pipeline;
`Exploration` moves one document from below the page onto it on a share of the others.
Misuse: interleaving a pipeline the index cannot run (refused at start).
"""

import json
import random
from pathlib import Path
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from souk.errors import ConfigError, QueryError
from souk.events.interleave import summary, team_draft
from souk.events.log import EventLog, event_log
from souk.types import SearchResult

STATIC = Path(__file__).parent / "static"


class Experiment:
    """Team-draft interleaving of pipelines `a` and `b` on a `share` of searches naming no pipeline."""

    def __init__(self, a: str, b: str, share: float = 1.0, seed: int | None = None):
        if a == b:
            raise ConfigError(f"--interleave: two different pipelines are needed, got {a!r} twice")
        if not 0 < share <= 1:
            raise ConfigError(f"--share: expected a share in (0, 1], got {share}")
        self.a, self.b, self.share = a, b, share
        self.name = f"{a},{b}"
        self.rng = random.Random(seed)

    @classmethod
    def parse(cls, spec: str, share: float = 1.0) -> "Experiment | None":
        """`A,B` as given to `souk serve --interleave` (empty: no experiment)."""
        if not spec:
            return None
        names = [p.strip() for p in spec.split(",") if p.strip()]
        if len(names) != 2:
            raise ConfigError(f"--interleave: expected two pipelines as A,B, got {spec!r}")
        return cls(names[0], names[1], share)

    def takes(self) -> bool:
        return self.share >= 1 or self.rng.random() < self.share

    def search(self, engine: Any, q: str, *, filters: list[str], facets: list[str], sort: str | None, k: int,
               offset: int, explain: bool, collapse: str | None, session: str | None) -> SearchResult:
        """One interleaved page: both pipelines' top `offset + k`, merged by team draft, the page logged with
        each shown document's team."""
        depth = offset + k
        runs = [engine.search(q, pipeline=name, filters=filters, facets=facets, sort=sort, k=depth, offset=0,
                              explain=explain, collapse=collapse, record=False) for name in (self.a, self.b)]
        ids, teams = team_draft([h.id for h in runs[0].hits], [h.id for h in runs[1].hits], depth, self.rng)
        hits = {h.id: h for h in runs[1].hits} | {h.id: h for h in runs[0].hits}
        result = runs[0]
        result.hits = [hits[i] for i in ids[offset:depth]]
        result.offset = offset
        result.pipeline = f"interleave:{self.name}"
        result.timings_ms = {f"{n}.{s}": v for n, r in zip((self.a, self.b), runs) for s, v in r.timings_ms.items()}
        return engine.record_search(result, q, filters, sort, session, interleave=self.name, teams=teams[offset:depth])


class Exploration:
    """On a `share` of the searches that name no pipeline, one document from just below the page (uniformly one
    of the next `size` of `pipeline`'s order) is shown at a uniformly random place on it, pushing the rest down
    one; the search is logged as pipeline `explore:<pipeline>` with what moved. Clicks then reach documents
    the ranking would not show, and documents are seen at more than one position, which identifies position
    bias (intervention harvesting: Joachims, Swaminathan, Schnabel, WSDM 2017; Agarwal et al., WSDM 2019).
    Sorted searches are not explored. Misuse: a share so large that shoppers mostly see perturbed pages."""

    def __init__(self, share: float, pipeline: str = "keyword", seed: int | None = None):
        if not 0 < share <= 1:
            raise ConfigError(f"--explore: expected a share in (0, 1], got {share}")
        self.share, self.pipeline = share, pipeline
        self.rng = random.Random(seed)

    @classmethod
    def parse(cls, share: float) -> "Exploration | None":
        """`souk serve --explore SHARE` (0: none)."""
        return None if share == 0 else cls(share)

    def takes(self) -> bool:
        return self.rng.random() < self.share

    def search(self, engine: Any, q: str, *, filters: list[str], facets: list[str], sort: str | None, k: int,
               offset: int, explain: bool, collapse: str | None, session: str | None) -> SearchResult:
        """One explored page (see the class), logged."""
        result = engine.search(q, pipeline=self.pipeline, filters=filters, facets=facets, sort=sort,
                               k=k if sort else 2 * k, offset=offset, explain=explain, collapse=collapse, record=False)
        page, below = result.hits[:k], result.hits[k:]
        moved: dict[str, Any] = {}
        if page and below:
            j, at = self.rng.randrange(len(below)), self.rng.randrange(len(page))
            moved = {"id": below[j].id, "from": offset + k + j + 1, "to": offset + at + 1}
            page = page[:at] + [below[j]] + page[at:k - 1]
        result.hits = page
        result.pipeline = f"explore:{self.pipeline}"
        return engine.record_search(result, q, filters, sort, session, explore=moved)


def events_router(engine: Any, role: Callable, admin: Callable) -> APIRouter:
    """The routes above over `engine`, with the app's key checks `role` (any key) and `admin`."""
    router = APIRouter()

    def log() -> EventLog:
        if engine.events is None:
            engine.events = event_log(engine.index.path)
        return engine.events

    @router.post("/events", status_code=202, summary="Report clicks, carts and purchases of a search (durable on 202)",
                 openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
                     "description": '{"search_id": str, "type": "click"|"cart"|"purchase", "id": '
                                    'DOC_ID, "position": INT}'}}}}})
    async def events_post(request: Request, _: Annotated[str, Depends(role)]) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise QueryError("request body is not valid JSON: send one event object or an array of them") from None
        events = body if isinstance(body, list) else [body]
        written = await run_in_threadpool(log().actions, events)  # fsync off the event loop
        return JSONResponse({"accepted": written}, status_code=202)

    @router.get("/experiments", summary="Interleaved experiments: searches, wins, ties, p-value, winner (admin key)")
    def experiments(_: Annotated[str, Depends(admin)],
                    since: Annotated[float | None, Query()] = None) -> dict[str, Any]:
        return summary(log().read(since))

    @router.get("/analytics/data", summary="Search analytics with SVG plots (admin key)")
    def analytics_data(_: Annotated[str, Depends(admin)],
                       since: Annotated[float | None, Query()] = None) -> dict[str, Any]:
        from souk.events.analytics import report

        return report(log().read(since))

    @router.get("/analytics", include_in_schema=False)
    def analytics_page() -> FileResponse:
        return FileResponse(STATIC / "analytics.html")

    return router
