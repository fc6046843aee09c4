"""Where a search becomes an impression: `record_search` gives a result its search_id and logs what was shown.

Called from one place, `Engine.record_search`, for every search (library, CLI, HTTP, the page). A disk that
cannot take the log (read-only index, full disk) does not fail the search: the search keeps its id, the
impression is lost, and a warning says so once. Misuse: logging an impression per stage or per retry.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

from souk.errors import QueryError
from souk.events.log import MAX_ID_CHARS, event_log, new_search_id
from souk.types import SearchResult

log = logging.getLogger("souk.events")


def check_session(session: str | None) -> str | None:
    """The session id as given, or QueryError when it is not a short string."""
    if session is None or session == "":
        return None
    if not isinstance(session, str) or len(session) > MAX_ID_CHARS or not session.isprintable():
        raise QueryError(f"session: expected printable text of at most {MAX_ID_CHARS} characters")
    return session


def impression(result: SearchResult, query: str, filters: Sequence[Any], sort: str | None,
               session: str | None) -> dict[str, Any]:
    """The logged record of one search (see `souk.events.log`)."""
    out: dict[str, Any] = {
        "search_id": result.search_id, "query": query, "pipeline": result.pipeline, "offset": result.offset,
        "shown": [h.id for h in result.hits], "total": result.total, "filters": [str(f) for f in filters],
        "sort": sort,
    }
    if result.searched is not None and result.searched != query:
        out["searched"] = result.searched
    if result.did_you_mean:
        out["did_you_mean"] = result.did_you_mean
    if result.relaxed:
        out["relaxed"] = True
    if result.notes:
        out["notes"] = list(result.notes)
    if session:
        out["session"] = session
    return out


def record_search(engine: Any, result: SearchResult, query: str, filters: Sequence[Any], sort: str | None,
                  session: str | None, extra: dict[str, Any]) -> SearchResult:
    """Give `result` a fresh search_id and append its impression (with `extra` fields) to the index's log."""
    session = check_session(session)
    result.search_id = new_search_id()
    if not engine.record_events:
        return result
    try:
        if engine.events is None:
            engine.events = event_log(engine.index.path)
        engine.events.search({**impression(result, query, filters, sort, session), **extra})
    except OSError as e:
        engine.record_events = False
        log.warning("search events are not recorded: the index's events/ directory cannot be written (%s)", e.strerror)
    return result
