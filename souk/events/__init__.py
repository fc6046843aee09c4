"""Traffic: the index's event log (searches and what shoppers did), labels from clicks, interleaving, analytics.

`log.py` (the append-only, crash-safe log in `DIR/events/`), `record.py` (a search's impression and
search_id), `labels.py` (position-debiased relevance labels from clicks, for `souk fit --events`),
`interleave.py` (team-draft interleaved experiments), `analytics.py` (what people search and click).
"""
