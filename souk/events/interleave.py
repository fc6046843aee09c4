"""Interleaved experiments: team-draft interleaving of two rankings, credited from the shoppers' clicks.

Team draft (Radlinski, Kurup, Joachims, "How Does Clickthrough Data Reflect Retrieval Quality?", CIKM
2008): the team with fewer picks so far (a coin flip when even) adds its highest-ranked document not yet
shown; each shown document remembers its team. One change: the common prefix of the two rankings (the
documents both put first, in the same order) is shown as it is and belongs to neither team ("ab"); the draft
starts after it. Both rankings agree there, so a click on it says nothing about which is better, and the
original draft credits it to a random team: variance without signal. On homedepot dev, BM25 and the ltr fitted
from clicks had the same top result on 85% of 60 queries (mean common prefix 3.5), where most clicks land.
A search is won by the pipeline whose documents got more clicks (carts and purchases count as clicks), tied
when both got the same number (no clicks, or clicks on the common prefix only, included).
Over searches with a winner, a two-sided sign (binomial) test asks whether wins split 50:50; the winner is
named once p < `ALPHA`, and `significant_at` says after how many searches the test stayed significant. Misuse: crediting
a search from clicks on documents it did not show.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

ALPHA = 0.05
POWER = 0.8  # the share of bootstrap experiments that must reach p < ALPHA (`searches_needed`)
BOOTSTRAP_ROUNDS = 1000
MAX_SEARCHES = 1_000_000  # `searches_needed` gives up (None) beyond this


def team_draft(a: Sequence[str], b: Sequence[str], k: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """The first `k` documents of the interleaved list and the team ('a', 'b', or 'ab' for the common prefix) of
    each."""
    prefix = 0
    while prefix < min(len(a), len(b), k) and a[prefix] == b[prefix]:
        prefix += 1
    shown: list[str] = list(a[:prefix])
    teams: list[str] = ["ab"] * prefix
    seen: set[str] = set(shown)
    ia = ib = picks_a = picks_b = 0
    while len(shown) < k:
        while ia < len(a) and a[ia] in seen:
            ia += 1
        while ib < len(b) and b[ib] in seen:
            ib += 1
        if ia >= len(a) and ib >= len(b):
            break
        take_a = ib >= len(b) or (ia < len(a) and (picks_a < picks_b or (picks_a == picks_b and rng.random() < 0.5)))
        doc = a[ia] if take_a else b[ib]
        picks_a, picks_b = picks_a + take_a, picks_b + (not take_a)
        seen.add(doc)
        shown.append(doc)
        teams.append("a" if take_a else "b")
    return shown, teams


def sign_test(wins_a: int, wins_b: int) -> float:
    """Two-sided exact binomial test of wins_a against p = 0.5 (1.0 with no wins)."""
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(wins_a, n, 0.5).pvalue)


@dataclass
class Outcome:
    experiment: str
    searches: int
    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    winner: str | None
    significant_at: int | None = None  # searches after which the test first said p < ALPHA and never lost it
    searches_needed: int | None = None  # bootstrap: searches at which POWER of resampled experiments are significant

    def to_dict(self) -> dict[str, Any]:
        a, b = self.experiment.split(",", 1) if "," in self.experiment else (None, None)
        return {"experiment": self.experiment, "a": a, "b": b, "searches": self.searches, "wins_a": self.wins_a,
                "wins_b": self.wins_b, "ties": self.ties, "p_value": round(self.p_value, 6), "winner": self.winner,
                "significant_at": self.significant_at, "searches_needed": self.searches_needed}


def outcomes(records: Iterable[dict[str, Any]]) -> list[Outcome]:
    """Every experiment in the log (searches carrying `interleave` and `teams`), most searches first."""
    searches: dict[str, tuple[str, dict[str, str]]] = {}
    clicked: dict[str, set[str]] = defaultdict(set)
    for r in records:
        kind = r.get("kind")
        if kind == "search" and isinstance(r.get("interleave"), str) and isinstance(r.get("teams"), list):
            shown = [str(x) for x in r.get("shown") or []]
            searches[r["search_id"]] = (r["interleave"], dict(zip(shown, r["teams"])))
        elif kind in ("click", "cart", "purchase"):
            clicked[str(r.get("search_id"))].add(str(r.get("id")))
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    steps: dict[str, list[int]] = defaultdict(list)  # per search in log order: +1 a won, -1 b won, 0 tie
    for sid, (name, teams) in searches.items():
        counts = {"a": 0, "b": 0}
        for doc in clicked.get(sid, ()):
            team = teams.get(doc)
            if team in counts:
                counts[team] += 1
        t = tally[name]
        t[0] += 1
        if counts["a"] > counts["b"]:
            t[1] += 1
        elif counts["b"] > counts["a"]:
            t[2] += 1
        else:
            t[3] += 1
        steps[name].append((counts["a"] > counts["b"]) - (counts["b"] > counts["a"]))
    out = []
    for name, (n, wa, wb, ties) in tally.items():
        p = sign_test(wa, wb)
        winner = ("a" if wa > wb else "b") if p < ALPHA else None
        out.append(Outcome(name, n, wa, wb, ties, p, winner, _significant_at(steps[name]) if winner else None,
                           interleaving_searches_needed(wa, wb, ties)))
    return sorted(out, key=lambda o: -o.searches)


def _significant_at(steps: list[int]) -> int | None:
    """The number of searches from which on every prefix of the experiment was significant."""
    from scipy.stats import binom

    a = b = 0
    last_bad = 0
    for i, step in enumerate(steps, 1):
        a, b = a + (step > 0), b + (step < 0)
        n = a + b
        if n == 0 or min(1.0, 2 * float(binom.cdf(min(a, b), n, 0.5))) >= ALPHA:
            last_bad = i
    return last_bad + 1 if last_bad < len(steps) else None


def _smallest(significant: Any) -> int | None:
    """The smallest number of searches (to 2%) at which `significant(n)`, the share of bootstrap experiments of n
    searches with p < ALPHA, reaches POWER: doubling from 16, then bisecting (power rises with n)."""
    high = 16
    while significant(high) < POWER:
        high *= 2
        if high > MAX_SEARCHES:
            return None
    low = high // 2
    while high - low > max(1, high // 50):
        middle = (low + high) // 2
        low, high = (low, middle) if significant(middle) >= POWER else (middle, high)
    return high


def interleaving_searches_needed(wins_a: int, wins_b: int, ties: int, seed: int = 0) -> int | None:
    """Searches an interleaved experiment needs for a sign test at ALPHA with probability POWER, by bootstrap
    over its logged searches (Efron and Tibshirani 1993: n searches redrawn with replacement, i.e. wins, losses and
    ties drawn multinomially at the observed shares; `BOOTSTRAP_ROUNDS` experiments per n). None without wins or
    when even `MAX_SEARCHES` do not suffice. Misuse: reading it for an experiment of a few dozen searches."""
    import numpy as np
    from scipy.stats import binom

    total = wins_a + wins_b + ties
    if not wins_a + wins_b or wins_a == wins_b:
        return None
    rng = np.random.default_rng(seed)
    shares = np.array([wins_a, wins_b, ties], dtype=np.float64) / total

    def significant(n: int) -> float:
        draws = rng.multinomial(n, shares, size=BOOTSTRAP_ROUNDS)
        decided = draws[:, 0] + draws[:, 1]
        p = np.minimum(1.0, 2 * binom.cdf(np.minimum(draws[:, 0], draws[:, 1]), decided, 0.5))
        return float(np.mean((p < ALPHA) & (decided > 0)))

    return _smallest(significant)


def ab_bootstrap_searches_needed(searches_a: int, clicked_a: int, searches_b: int, clicked_b: int,
                                 seed: int = 0) -> int | None:
    """Searches (both arms, split 50:50) an A/B split of click-through needs for a two-sided two-proportion z-test
    at ALPHA with probability POWER, by bootstrap over its logged searches (each arm's searches redrawn with
    replacement: binomial clicks at the observed rate), the counterpart of `interleaving_searches_needed`."""
    import numpy as np
    from scipy.stats import norm

    if not searches_a or not searches_b or clicked_a * searches_b == clicked_b * searches_a:
        return None
    rng = np.random.default_rng(seed)
    rate_a, rate_b = clicked_a / searches_a, clicked_b / searches_b

    def significant(n: int) -> float:
        half = max(n // 2, 1)
        ca, cb = rng.binomial(half, rate_a, BOOTSTRAP_ROUNDS), rng.binomial(half, rate_b, BOOTSTRAP_ROUNDS)
        pooled = (ca + cb) / (2 * half)
        se = np.sqrt(pooled * (1 - pooled) * 2 / half)
        z = np.divide(np.abs(ca - cb) / half, se, out=np.zeros(BOOTSTRAP_ROUNDS), where=se > 0)
        return float(np.mean(2 * norm.sf(z) < ALPHA))

    return 2 * (found // 2) if (found := _smallest(significant)) is not None else None


def summary(records: Iterable[dict[str, Any]], experiment: str | None = None) -> dict[str, Any]:
    """One JSON object: the named experiment's (or the largest one's) searches, wins, ties, p-value, winner,
    and every experiment under `experiments`."""
    found = outcomes(records)
    chosen = (
        next((o for o in found if o.experiment == experiment), None) if experiment else (found[0] if found else None)
    )
    base = chosen.to_dict() if chosen else {"experiment": experiment, "a": None, "b": None, "searches": 0, "wins_a": 0,
                                            "wins_b": 0, "ties": 0, "p_value": 1.0, "winner": None,
                                            "significant_at": None, "searches_needed": None}
    return {**base, "alpha": ALPHA, "experiments": [o.to_dict() for o in found]}


def ab_searches_needed(ctr_a: float, ctr_b: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Searches (both arms together, split 50:50) an A/B test of click-through needs to tell `ctr_a` from `ctr_b`
    with a two-sided two-proportion z-test at `alpha` with probability `power` (the usual normal-approximation
    sample size, e.g. Kohavi, Tang, Xu, "Trustworthy Online Controlled Experiments", 2020, ch. 17); None when the
    rates are equal. Misuse: feeding it click-through rates measured on a handful of searches."""
    from scipy.stats import norm

    if not (0 <= ctr_a <= 1 and 0 <= ctr_b <= 1):
        raise ValueError(f"click-through rates must lie in [0, 1], got {ctr_a}, {ctr_b}")
    if ctr_a == ctr_b:
        return None
    mean = (ctr_a + ctr_b) / 2
    z_alpha, z_power = float(norm.isf(alpha / 2)), float(norm.isf(1 - power))
    root = z_alpha * (2 * mean * (1 - mean)) ** 0.5 + z_power * (ctr_a * (1 - ctr_a) + ctr_b * (1 - ctr_b)) ** 0.5
    return 2 * int(-(-root ** 2 // (ctr_a - ctr_b) ** 2))


def ab_summary(records: Iterable[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """The A/B split view of the same question, for comparison: searches run by pipeline `a` or `b` alone (not
    interleaved), their click-through (share of searches with a click) and a two-sided two-proportion z-test."""
    from scipy.stats import norm

    searches: dict[str, str] = {}
    clicked: set[str] = set()
    for r in records:
        if r.get("kind") == "search" and not r.get("interleave") and r.get("pipeline") in (a, b):
            searches[r["search_id"]] = r["pipeline"]
        elif r.get("kind") in ("click", "cart", "purchase"):
            clicked.add(str(r.get("search_id")))
    n = {p: sum(1 for v in searches.values() if v == p) for p in (a, b)}
    c = {p: sum(1 for s, v in searches.items() if v == p and s in clicked) for p in (a, b)}
    if min(n.values()) == 0:
        p_value = 1.0
    else:
        pooled = (c[a] + c[b]) / (n[a] + n[b])
        se = (pooled * (1 - pooled) * (1 / n[a] + 1 / n[b])) ** 0.5
        p_value = 1.0 if se == 0 else float(2 * norm.sf(abs(c[a] / n[a] - c[b] / n[b]) / se))
    ctr = {p: round(c[p] / n[p], 4) if n[p] else None for p in (a, b)}
    winner = None
    if p_value < ALPHA:
        winner = "a" if (ctr[a] or 0) > (ctr[b] or 0) else "b"
    return {"a": a, "b": b, "searches_a": n[a], "searches_b": n[b], "ctr_a": ctr[a], "ctr_b": ctr[b],
            "p_value": round(p_value, 6), "winner": winner,
            "searches_needed": ab_bootstrap_searches_needed(n[a], c[a], n[b], c[b])}
