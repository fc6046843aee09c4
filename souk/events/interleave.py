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
Searches of one shopper (one `session`) are not independent: an A/B test buckets shoppers, so its variance is the
spread between shoppers (clustered, by the delta method for a ratio of sums: Deng, Knoblich, Lu, "Applying the
Delta Method in Metric Analytics", KDD 2018); the `shopper_` numbers resample whole shoppers (for interleaving
too, still credited per search), the others single searches. A search without a session is a shopper of its own.
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
MAX_SHOPPERS = 5_000  # shopper bootstraps resample a random subset of this many shoppers of a larger log


def team_draft(a: Sequence[str], b: Sequence[str], k: int, rng: random.Random,
               shared_prefix: bool = True) -> tuple[list[str], list[str]]:
    """The first `k` documents of the interleaved list and the team ('a', 'b', or 'ab' for the common prefix) of
    each; without `shared_prefix` the original draft (the common prefix drafted like the rest)."""
    prefix = 0
    while shared_prefix and prefix < min(len(a), len(b), k) and a[prefix] == b[prefix]:
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


class _Coins:
    """A stand-in for `random.Random` in `team_draft` that replays scripted coin flips (`random()` values), then
    flips "a" (0.0), recording every value it returned."""

    def __init__(self, script: tuple[float, ...]):
        self.script, self.used = script, []  # type: tuple[float, ...], list[float]

    def random(self) -> float:
        value = self.script[len(self.used)] if len(self.used) < len(self.script) else 0.0
        self.used.append(value)
        return value


def team_draft_pages(a: Sequence[str], b: Sequence[str], k: int,
                     shared_prefix: bool = True) -> list[tuple[list[str], list[str], float]]:
    """Every page `team_draft` can show for rankings `a` and `b`, with its teams and its chance: the draft itself,
    replayed over each sequence of its coin flips (at most one a pair of picks, so at most 2^(k/2) pages)."""
    pages, todo = [], [()]  # type: list[tuple[list[str], list[str], float]], list[tuple[float, ...]]
    while todo:
        script = todo.pop()
        coins = _Coins(script)
        shown, teams = team_draft(a, b, k, coins, shared_prefix)  # type: ignore[arg-type]
        pages.append((shown, teams, 0.5 ** len(coins.used)))
        todo += [tuple(coins.used[:i]) + (0.9,) for i in range(len(script), len(coins.used))]
    return pages


def reported_p(p: float) -> float:
    """A p-value as reports show it: six significant digits (six decimals showed 4e-10 as 0.0)."""
    return float(f"{p:.6g}")


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
    shopper_searches_needed: int | None = None  # the same, resampling whole shoppers (sessions)

    def to_dict(self) -> dict[str, Any]:
        a, b = self.experiment.split(",", 1) if "," in self.experiment else (None, None)
        return {"experiment": self.experiment, "a": a, "b": b, "searches": self.searches, "wins_a": self.wins_a,
                "wins_b": self.wins_b, "ties": self.ties, "p_value": reported_p(self.p_value), "winner": self.winner,
                "significant_at": self.significant_at, "searches_needed": self.searches_needed,
                "shopper_searches_needed": self.shopper_searches_needed}


def outcomes(records: Iterable[dict[str, Any]]) -> list[Outcome]:
    """Every experiment in the log (searches carrying `interleave` and `teams`), most searches first."""
    searches: dict[str, tuple[str, dict[str, str], str]] = {}
    clicked: dict[str, set[str]] = defaultdict(set)
    for r in records:
        kind = r.get("kind")
        if kind == "search" and isinstance(r.get("interleave"), str) and isinstance(r.get("teams"), list):
            shown = [str(x) for x in r.get("shown") or []]
            sid = str(r["search_id"])
            searches[sid] = (r["interleave"], dict(zip(shown, r["teams"])), str(r.get("session") or "#" + sid))
        elif kind in ("click", "cart", "purchase"):
            clicked[str(r.get("search_id"))].add(str(r.get("id")))
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    steps: dict[str, list[int]] = defaultdict(list)  # per search in log order: +1 a won, -1 b won, 0 tie
    shoppers: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for sid, (name, teams, session) in searches.items():
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
        step, shopper = steps[name][-1], shoppers[name][session]
        shopper[0] += 1
        shopper[1] += step > 0
        shopper[2] += step < 0
    out = []
    for name, (n, wa, wb, ties) in tally.items():
        p = sign_test(wa, wb)
        winner = ("a" if wa > wb else "b") if p < ALPHA else None
        out.append(Outcome(name, n, wa, wb, ties, p, winner, _significant_at(steps[name]) if winner else None,
                           interleaving_searches_needed(wa, wb, ties),
                           interleaving_shopper_searches_needed(list(shoppers[name].values()))))
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


def _shopper_sums(rows: Any, rng: Any) -> Any:
    """A function k -> BOOTSTRAP_ROUNDS x columns: the column sums of about k shoppers (rows) drawn with
    replacement, by the Poisson bootstrap (each shopper counted Poisson(k / shoppers) times; Chamandy, Muralidharan,
    Najmi, Naidu, "Estimating Uncertainty for Massive Data Streams", Google 2012)."""
    import numpy as np

    if len(rows) > MAX_SHOPPERS:
        rows = rows[rng.choice(len(rows), MAX_SHOPPERS, replace=False)]
    chunk = max(1, 2_000_000 // len(rows))  # rounds at a time, so the weights stay a few MB

    def sums(k: int) -> Any:
        return np.concatenate([rng.poisson(k / len(rows), (min(chunk, BOOTSTRAP_ROUNDS - start), len(rows))) @ rows
                               for start in range(0, BOOTSTRAP_ROUNDS, chunk)])

    return sums


def interleaving_shopper_searches_needed(shoppers: Sequence[Sequence[int]], seed: int = 0) -> int | None:
    """`interleaving_searches_needed` resampling whole shoppers, tested as an A/B split of shoppers is: `shoppers`
    holds (searches, wins_a, wins_b) per shopper; n searches are about n / (mean searches a shopper) shoppers drawn
    with replacement, and the mean per-search margin (wins_b - wins_a) / searches is tested against 0 with its
    clustered variance (`_ratio`). None without a difference in wins."""
    import numpy as np
    from scipy.stats import norm

    rows = np.array(shoppers, dtype=np.float64).reshape(-1, 3)
    if not len(rows) or rows[:, 1].sum() == rows[:, 2].sum():
        return None
    rng = np.random.default_rng(seed)
    n, d = rows[:, 0], rows[:, 2] - rows[:, 1]
    sums = _shopper_sums(np.stack([np.ones_like(n), n, d, n * n, d * d, n * d], axis=1), rng)
    each = n.mean()

    def significant(searches: int) -> float:
        margin, var = _ratio(sums(max(1, round(searches / each))))
        se = np.sqrt(var)
        z = np.divide(margin, se, out=np.array(np.where(margin == 0, 0.0, np.inf)), where=se > 0)
        return float(np.mean(2 * norm.sf(np.abs(z)) < ALPHA))

    return _smallest(significant)


def _ratio(s: Any) -> tuple[Any, Any]:
    """Ratio of sums and its variance by the delta method (Deng et al. 2018) from (..., 6) sums over k shoppers of
    (1, n, c, n^2, c^2, n c): mean c over mean n and Var ~ (var c - 2 r cov + r^2 var n) / ((k - 1) mean_n^2)."""
    import numpy as np

    s = np.asarray(s, dtype=np.float64)
    k = np.maximum(s[..., 0], 1)
    mean_n, mean_c = s[..., 1] / k, s[..., 2] / k
    var_n, var_c = s[..., 3] / k - mean_n ** 2, s[..., 4] / k - mean_c ** 2
    cov = s[..., 5] / k - mean_n * mean_c
    r = np.divide(mean_c, mean_n, out=np.zeros_like(mean_c), where=mean_n > 0)
    var = np.divide(var_c - 2 * r * cov + r ** 2 * var_n, np.maximum(k - 1, 1) * mean_n ** 2,
                    out=np.zeros_like(mean_c), where=mean_n > 0)
    return r, np.maximum(var, 0)


def clustered_z(a: Any, b: Any) -> Any:
    """z of click-through B minus A, each arm a ratio of sums over its shoppers (`_ratio`). `a`, `b`: (..., 6) sums
    over k shoppers of (1, searches, clicked, searches^2, clicked^2, searches * clicked); +-inf where the variance
    is 0 and the rates differ (0 where they do not)."""
    import numpy as np

    (ra, va), (rb, vb) = _ratio(a), _ratio(b)
    se, diff = np.sqrt(va + vb), rb - ra
    out = np.array(np.where(diff == 0, 0.0, np.copysign(np.inf, diff)), dtype=np.float64)
    return np.divide(diff, se, out=out, where=se > 0)


def _moments(shoppers: Sequence[Sequence[int]]) -> Any:
    """(1, n, c, n^2, c^2, n c) per shopper from (searches n, clicked searches c)."""
    import numpy as np

    nc = np.array(shoppers, dtype=np.float64).reshape(-1, 2)
    n, c = nc[:, 0], nc[:, 1]
    return np.stack([np.ones_like(n), n, c, n * n, c * c, n * c], axis=1)


def ab_shopper_searches_needed(shoppers_a: Sequence[Sequence[int]], shoppers_b: Sequence[Sequence[int]],
                               seed: int = 0) -> int | None:
    """Searches (both arms) an A/B split of shoppers needs for the clustered z-test of click-through (`clustered_z`)
    at ALPHA with probability POWER, by bootstrap over its logged shoppers: n searches are n / (2 x mean searches a
    shopper) shoppers an arm, drawn with replacement from that arm's. `shoppers_*`: (searches, clicked searches)
    per shopper. None when an arm is empty or both click through alike. Misuse: splitting searches, not shoppers."""
    import numpy as np
    from scipy.stats import norm

    if not len(shoppers_a) or not len(shoppers_b):
        return None
    rows_a, rows_b = _moments(shoppers_a), _moments(shoppers_b)
    if rows_a[:, 2].sum() * rows_b[:, 1].sum() == rows_b[:, 2].sum() * rows_a[:, 1].sum():
        return None
    rng = np.random.default_rng(seed)
    sums_a, sums_b = _shopper_sums(rows_a, rng), _shopper_sums(rows_b, rng)
    each = (rows_a[:, 1].sum() + rows_b[:, 1].sum()) / (len(rows_a) + len(rows_b))

    def significant(n: int) -> float:
        k = max(2, round(n / 2 / each))
        return float(np.mean(2 * norm.sf(np.abs(clustered_z(sums_a(k), sums_b(k)))) < ALPHA))

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
                                            "significant_at": None, "searches_needed": None,
                                            "shopper_searches_needed": None}
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
    sessions: dict[str, str] = {}
    clicked: set[str] = set()
    for r in records:
        if r.get("kind") == "search" and not r.get("interleave") and r.get("pipeline") in (a, b):
            searches[r["search_id"]] = r["pipeline"]
            sessions[r["search_id"]] = str(r.get("session") or "#" + str(r["search_id"]))
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
    # shoppers: (searches, clicked searches) per session and pipeline (a session seen by both counts in each)
    per: dict[str, dict[str, list[int]]] = {a: defaultdict(lambda: [0, 0]), b: defaultdict(lambda: [0, 0])}
    for sid, pipeline in searches.items():
        shopper = per[pipeline][sessions[sid]]
        shopper[0], shopper[1] = shopper[0] + 1, shopper[1] + (sid in clicked)
    shoppers_a, shoppers_b = list(per[a].values()), list(per[b].values())
    shopper_p, design = 1.0, None
    if shoppers_a and shoppers_b:
        sums_a, sums_b = _moments(shoppers_a).sum(axis=0), _moments(shoppers_b).sum(axis=0)
        shopper_p = float(2 * norm.sf(abs(float(clustered_z(sums_a, sums_b)))))
        # design effect: the clustered variance of the difference over the variance if searches were independent
        (ra, va), (rb, vb) = _ratio(sums_a), _ratio(sums_b)
        naive = float(ra * (1 - ra) / sums_a[1] + rb * (1 - rb) / sums_b[1])
        design = round(float(va + vb) / naive, 3) if naive > 0 else None
    return {"a": a, "b": b, "searches_a": n[a], "searches_b": n[b], "ctr_a": ctr[a], "ctr_b": ctr[b],
            "p_value": reported_p(p_value), "winner": winner,
            "searches_needed": ab_bootstrap_searches_needed(n[a], c[a], n[b], c[b]),
            "shoppers_a": len(shoppers_a), "shoppers_b": len(shoppers_b), "shopper_p_value": reported_p(shopper_p),
            "design_effect": design,
            "shopper_searches_needed": ab_shopper_searches_needed(shoppers_a, shoppers_b)}
