"""Explicit limits on what souk accepts, in one place; every check says which limit an input broke.

Readers and validators import these instead of hard-coding numbers, so the documented limit and the
enforced one never drift apart. Misuse: raising a limit here without checking what sits below it
(tantivy drops terms over `MAX_TERM_BYTES`; Python's JSON decoder recurses per nesting level).
"""
from __future__ import annotations

MAX_FIELD_CHARS = 1_048_576
"""Longest value of one field (a CSV cell, a JSON string) in characters: 1 MiB."""

MAX_LINE_BYTES = 16 * 1_048_576
"""Longest line of a JSONL catalog (one record) in bytes: 16 MiB."""

MAX_JSON_ARRAY_BYTES = 1024 * 1_048_576
"""Largest `.json` array catalog (read whole into memory): 1 GiB; JSONL has no such limit."""

MAX_NESTING = 64
"""Deepest nesting of objects/arrays in one record (a JSON line, an element of a JSON array)."""

MAX_TERM_BYTES = 65_530
"""tantivy's longest term (u16::MAX - 5 bytes of UTF-8); ids and keyword values above it are refused."""

MAX_ID_BYTES = MAX_TERM_BYTES
"""Longest document id in UTF-8 bytes (ids are indexed as one raw term)."""

MAX_HANDOVER_BYTES = 128 * 1_048_576
"""Analyzed terms a writer keeps in memory (estimated bytes) of the commit it is writing, for the term store built
after it (`souk.index.handover`); a commit writing more hands nothing over: its store is built from the stored
documents. The process keeps one handed-over commit at most."""

EXACT_DISTINCT_LIMIT = 200
"""tantivy's distinct count (HyperLogLog) was measured exact up to about 200 values; above, it is an estimate."""


def describe_bytes(value: int) -> str:
    """A size limit for humans: `16 MiB`, `65,530 bytes`."""
    if value >= 1_073_741_824 and value % 1_073_741_824 == 0:
        return f"{value // 1_073_741_824} GiB"
    if value >= 1_048_576 and value % 1_048_576 == 0:
        return f"{value // 1_048_576} MiB"
    return f"{value:,} bytes"

MAX_FIELDS = 1_024
"""Most fields one schema may declare (or one catalog may make an inferred schema declare)."""

MAX_SYNONYM_FILE_BYTES = 4 * 1_048_576
"""Largest synonym file: 4 MiB (the shipped zh/en set is 5 KB)."""

MAX_SYNONYM_RULE_TERMS = 32
"""Most terms in one synonym rule (both sides): an equivalent rule of n terms makes n * (n - 1) expansions."""

MAX_SYNONYM_EXPANSIONS = 200_000
"""Most (term -> expansion) pairs one synonym file may define in all."""

MAX_SYNONYM_TERM_CHARS = 200
"""Longest term of a synonym rule in characters."""

# ---- serving (HTTP) ------------------------------------------------------------------------------
MAX_BODY_BYTES = 16 * 1_048_576
"""Largest request body the server reads (document batches, JSON or NDJSON): 16 MiB; larger gets 413."""

MAX_SEARCH_BODY_BYTES = 64 * 1024
"""Largest body of a POST /search: 64 KiB (a query, filters and options, never documents)."""

MAX_BATCH = 10_000
"""Most documents in one write request; a larger batch is refused whole (split it)."""

MAX_PAGE_SIZE = 100
"""Most hits on one page of /search (`size`)."""

MAX_HEAD_BYTES = 16 * 1024
"""Largest request line plus headers: 16 KiB (uvicorn's h11 limit is set to it)."""

BODY_IDLE_TIMEOUT_S = 30.0
"""Seconds a request body may stall between chunks before the server answers 408 and closes."""

HEAD_TIMEOUT_S = 10.0
"""Seconds a connection may take to send its request line and headers before it is closed."""

KEEP_ALIVE_S = 5
"""Seconds an idle keep-alive connection stays open between requests."""

MIN_KEY_CHARS = 16
"""Shortest API key (admin or search) the server accepts."""

# ---- events (the search and action log) ----------------------------------------------------------
MAX_EVENT_ID_CHARS = 64
"""Longest search id, document id of an action, or session id in the event log."""

MAX_ACTIONS_PER_REQUEST = 1_000
"""Most actions (click, cart, purchase) in one POST /events."""

MAX_KNOWN_SEARCHES = 2_000_000
"""Search ids kept in memory to check actions against (the oldest are forgotten first)."""

EVENTS_RETENTION_DAYS = 90.0
"""Default age past which event segments are deleted (SOUK_EVENTS_RETENTION_DAYS overrides it)."""

EVENTS_MAX_BYTES = 1 << 30
"""Default size of the whole event log, oldest segments deleted first: 1 GiB (SOUK_EVENTS_MAX_MB overrides it)."""

EVENTS_SEGMENT_BYTES = 64 << 20
"""Size at which the event log starts a new segment: 64 MiB."""

EVENTS_SEGMENT_AGE_S = 86_400.0
"""Age at which the event log starts a new segment: one day."""

MAX_IMPACT_TOKENS = 20_000_000
"""Analyzed tokens of a commit's search fields up to which `Searcher.bm25` builds impacts (16 bytes a posting:
a row and an f64 score, at most ~320 MB; a few times that while building); larger indexes keep answering from
tantivy alone."""
MAX_IMPACT_VIEWS = 20_000
"""Query terms whose postings one field's impacts keep at hand (`FieldImpacts.views`, ~0.5 KB each: ~10 MB); past
it the field forgets them all and starts again (a server's long tail of words cannot grow it without end)."""

# ---- user dictionaries (jieba words; `souk.analysis.user_words`) ----------------------------------
MAX_USER_DICT_BYTES = 4 * 1_048_576
"""Largest jieba user dictionary (a schema's `user_dict`, an index's mined word list): 4 MiB."""

MAX_USER_WORDS = 100_000
"""Most words one user dictionary may add to jieba's."""

MAX_USER_WORD_CHARS = 32
"""Longest word of a user dictionary in characters."""
