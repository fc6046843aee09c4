"""What shoppers search and click, from the event log: the numbers behind `souk analytics` and `/analytics`.

Searches per day, top queries, zero-result queries, the queries with the lowest click-through, click-through
and mean reciprocal rank of the first click by position and by pipeline, and the queries where clicks and the
ranking disagree most: Kendall's tau between the order shown and the order of the position-debiased
attractiveness of `souk.events.labels` (a low tau: shoppers click past what the ranking put first). Plots are
inline SVG (no plotting library or CDN in the page). Misuse: reading click-through of a query with a handful
of searches as a trend (`MIN_SEARCHES`).
"""
from __future__ import annotations

import html
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np

from souk.events.labels import fit_pbm, observations, query_key

TOP = 20
MAX_POSITION = 20
MIN_SEARCHES = 3  # a query's click-through is listed once it was searched this often


def report(records: Iterable[dict[str, Any]], top: int = TOP) -> dict[str, Any]:
    """Every analytics table of the log as one JSON-ready object (see the module docstring)."""
    records = list(records)
    searches = {r["search_id"]: r for r in records if r.get("kind") == "search" and isinstance(r.get("search_id"), str)}
    clicks: dict[str, dict[str, int]] = defaultdict(dict)  # search -> doc -> first position clicked
    actions: Counter[str] = Counter()
    for r in records:
        if r.get("kind") in ("click", "cart", "purchase"):
            actions[r["kind"]] += 1
            s = searches.get(r.get("search_id"))
            if s is None:
                continue
            doc = str(r.get("id"))
            shown = [str(x) for x in s.get("shown") or []]
            pos = int(s.get("offset") or 0) + shown.index(doc) + 1 if doc in shown else r.get("position")
            if isinstance(pos, int):
                clicks[s["search_id"]].setdefault(doc, pos)
    per_day: Counter = Counter()
    queries: Counter = Counter()
    zero: Counter = Counter()
    clicked_searches: Counter = Counter()
    texts: dict[str, str] = {}
    shown_at = np.zeros(MAX_POSITION + 1)
    clicked_at = np.zeros(MAX_POSITION + 1)
    by_pipeline: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])  # searches, clicked, reciprocal ranks
    for sid, s in searches.items():
        day = datetime.fromtimestamp(float(s.get("t", 0)), timezone.utc).strftime("%Y-%m-%d")
        per_day[day] += 1
        key = query_key(s.get("query", ""))
        texts.setdefault(key, s.get("query", ""))
        queries[key] += 1
        if not s.get("total"):
            zero[key] += 1
        offset = int(s.get("offset") or 0)
        for i in range(len(s.get("shown") or [])):
            if offset + i + 1 <= MAX_POSITION:
                shown_at[offset + i + 1] += 1
        mine = clicks.get(sid, {})
        for pos in mine.values():
            if pos <= MAX_POSITION:
                clicked_at[pos] += 1
        p = by_pipeline[str(s.get("interleave") and "interleave:" + s["interleave"] or s.get("pipeline"))]
        p[0] += 1
        if mine:
            clicked_searches[key] += 1
            p[1] += 1
            p[2] += 1.0 / min(mine.values())
    ctr: list[dict[str, Any]] = [{"query": texts[q], "searches": n, "ctr": round(clicked_searches[q] / n, 4)}
           for q, n in queries.items() if n >= MIN_SEARCHES]
    positions: list[dict[str, Any]] = [{"position": k, "impressions": int(shown_at[k]),
                  "ctr": round(float(clicked_at[k] / shown_at[k]), 4) if shown_at[k] else None}
                 for k in range(1, MAX_POSITION + 1) if shown_at[k]]
    pipelines: list[dict[str, Any]] = [{"pipeline": name, "searches": int(n), "ctr": round(c / n, 4) if n else None,
                  "mrr": round(rr / n, 4) if n else None} for name, (n, c, rr) in sorted(by_pipeline.items())]
    days = sorted(per_day.items())
    out = {
        "searches": len(searches), "actions": dict(actions),
        "clicked_searches": int(sum(1 for s in searches if clicks.get(s))),
        "searches_per_day": [{"day": d, "searches": n} for d, n in days],
        "top_queries": [{"query": texts[q], "searches": n, "ctr": round(clicked_searches[q] / n, 4)}
                        for q, n in queries.most_common(top)],
        "zero_result_queries": [{"query": texts[q], "searches": n} for q, n in zero.most_common(top)],
        "lowest_ctr_queries": sorted(ctr, key=lambda x: (x["ctr"], -x["searches"]))[:top],
        "by_position": positions,
        "by_pipeline": pipelines,
        "disagreements": disagreements(records, top),
    }
    out["plots"] = {
        "searches_per_day": bar_svg([d for d, _ in days], [n for _, n in days], "searches per day"),
        "ctr_by_position": bar_svg([str(p["position"]) for p in positions], [p["ctr"] or 0 for p in positions],
                                   "click-through by position"),
        "mrr_by_pipeline": bar_svg([p["pipeline"] for p in pipelines], [p["mrr"] or 0 for p in pipelines],
                                   "mean reciprocal rank of the first click by pipeline"),
    }
    return out


def disagreements(records: Iterable[dict[str, Any]], top: int = TOP, min_clicks: int = 3) -> list[dict[str, Any]]:
    """Queries whose shown order disagrees most with their debiased click attractiveness (lowest tau first)."""
    from scipy.stats import kendalltau

    obs = observations(records)
    if not obs.pairs or not obs.clicked.any():
        return []
    model = fit_pbm(obs)
    rows: dict[str, list[tuple[str, float, float, float]]] = defaultdict(list)
    position = np.bincount(obs.pair, obs.position, len(obs.pairs)) / np.maximum(
        np.bincount(obs.pair, minlength=len(obs.pairs)), 1
    )
    clicks = np.bincount(obs.pair, obs.clicked, len(obs.pairs))
    for i, (key, doc) in enumerate(obs.pairs):
        rows[key].append((doc, float(position[i]), float(model.gamma[i]), float(clicks[i])))
    out: list[dict[str, Any]] = []
    for key, docs in rows.items():
        total = sum(d[3] for d in docs)
        if total < min_clicks or len(docs) < 3:
            continue
        tau = kendalltau([-d[1] for d in docs], [d[2] for d in docs]).statistic
        if tau != tau:  # NaN: every document equally attractive
            continue
        best = max(docs, key=lambda d: d[2])
        out.append({"query": obs.texts[key], "clicks": int(total), "tau": round(float(tau), 4),
                    "most_attractive": best[0], "its_position": round(best[1], 1)})
    return sorted(out, key=lambda x: (x["tau"], -x["clicks"]))[:top]


def bar_svg(labels: list[str], values: list[float], title: str, width: int = 640, height: int = 220) -> str:
    """A bar chart as a standalone SVG string (labels escaped)."""
    pad, bottom = 40, 40
    n = max(len(values), 1)
    top = max([float(v) for v in values] + [1e-9])
    bw = (width - 2 * pad) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}">',
             f'<text x="{pad}" y="16" font-size="13" font-family="sans-serif">{html.escape(title)}</text>',
             f'<text x="4" y="{pad}" font-size="10" font-family="sans-serif">{top:.3g}</text>']
    for i, (label, v) in enumerate(zip(labels, values)):
        h = (height - pad - bottom) * float(v) / top
        x = pad + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{height - bottom - h:.1f}" '
                     f'width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                     f'fill="#3b6ea5"><title>{html.escape(str(label))}: {float(v):.4g}</title></rect>')
        if n <= 24:
            parts.append(f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 14}" font-size="9" text-anchor="middle" '
                         f'font-family="sans-serif">{html.escape(str(label)[:12])}</text>')
    parts.append(f'<line x1="{pad}" y1="{height - bottom}" x2="{width - pad}" y2="{height - bottom}" '
                 'stroke="#333"/></svg>')
    return "".join(parts)
