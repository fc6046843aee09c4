"""Searches an interleaved experiment and an A/B split need to tell two rankers apart, computed exactly from the
simulated shoppers' click model (`souk bench power`), not estimated from one noisy run.

For each judged query both pipelines' pages are fixed (`souk.engine.Engine.search`, nothing logged); the shoppers
of `souk.bench.traffic.Shoppers` click position k of a page with chance e k^-eta attracted(grade), independently
across positions, e their engagement (1, or Beta(a, b) drawn once a shopper; integrated by Gauss-Jacobi quadrature,
exact for these polynomials in e). From that, per query and engagement, the exact mean and second moment of:
- A/B's per-search metrics, the absolute click metrics of Radlinski, Kurup, Joachims (CIKM 2008) and Chapelle,
  Joachims, Radlinski, Yue ("Large-scale validation and analysis of interleaved search evaluation", TOIS 2012):
  `clicked` (1 - abandonment), `clicks` (clicks per search), `first_click_rr` (reciprocal rank of the first click,
  0 without one; max reciprocal rank, as the first click is the highest);
- interleaving's per-search preference D (+1 when B's team got more clicks, -1 when A's did, 0 for a tie), over
  every page team draft can show (`souk.events.interleave.team_draft_pages`, each with its coin flips' chance);
  souk's draft (the rankings' common prefix credited to neither) and, for comparison, the original (Radlinski et al.
  2008: the prefix drafted like the rest, `interleaving_original_draft`).
Shoppers draw queries uniformly from the split. Both designs get the same test: a two-sided z-test at `ALPHA` with
power `POWER`, n = (z_{1-alpha/2} + z_power)^2 V / delta^2 (Kohavi, Tang, Xu, "Trustworthy Online Controlled
Experiments", 2020, ch. 17), V the variance one search adds to the estimate: for A/B, searches split 50:50 between
two groups of shoppers, V = 2 (var_A + var_B) (a two-sample test of the metric's means); for interleaving, every
search sees both rankers, V = var(D) (a one-sample test of mean preference against 0: a paired design). With m
searches a shopper (an A/B test buckets shoppers) each variance is multiplied by the design effect 1 + (m - 1) rho
(Kish, "Survey Sampling", 1965), rho the correlation of two searches of one shopper, here Var_e(E[metric | e]) over
the metric's variance: the spread between shoppers' engagement. Misuse: reading it for a shop whose shoppers
differ in ways the simulator does not model (query mix, intent, time): those add to A/B's variance, not D's.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from souk.bench.traffic import Shoppers
from souk.errors import ConfigError
from souk.events.interleave import ALPHA, POWER, team_draft_pages

METRICS = ("clicked", "clicks", "first_click_rr")
NODES = 24  # quadrature nodes over the engagement (exact for polynomials of degree < 48 in e)


def engagement_nodes(shoppers: Shoppers) -> tuple[np.ndarray, np.ndarray]:
    """Engagement values and their weights (summing to 1): Gauss-Jacobi nodes of Beta(a, b), or e = 1."""
    if shoppers.engagement is None:
        return np.ones(1), np.ones(1)
    from scipy.special import roots_jacobi

    a, b = shoppers.engagement
    x, w = roots_jacobi(NODES, b - 1, a - 1)  # weight (1 - x)^(b-1) (1 + x)^(a-1) on [-1, 1]; e = (1 + x) / 2
    return (1 + x) / 2, w / w.sum()


def click_chances(page: Sequence[str], grades: dict[str, int], top: int, shoppers: Shoppers,
                  engaged: np.ndarray) -> np.ndarray:
    """(engagement values, positions): the chance each shown document is clicked."""
    exam = np.arange(1, len(page) + 1, dtype=np.float64) ** -shoppers.eta
    attr = np.array([shoppers.attracted(grades.get(doc, 0), top) for doc in page])
    return np.outer(engaged, exam * attr)


def page_moments(p: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per engagement value, the mean and second moment of each of `METRICS` on a page with click chances `p`."""
    none = np.prod(1 - p, axis=1)
    clicks = p.sum(axis=1)
    before = np.cumprod(np.concatenate([np.ones((len(p), 1)), 1 - p[:, :-1]], axis=1), axis=1)
    first = p * before  # chance that position k holds the first click
    rank = np.arange(1, p.shape[1] + 1, dtype=np.float64)
    return {"clicked": (1 - none, 1 - none), "clicks": (clicks, (p * (1 - p)).sum(axis=1) + clicks ** 2),
            "first_click_rr": ((first / rank).sum(axis=1), (first / rank ** 2).sum(axis=1))}


def preference(pages: list[tuple[list[str], list[str], float]], grades: dict[str, int], top: int, shoppers: Shoppers,
               engaged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per engagement value, the chances that team a's documents get more clicks than team b's, and fewer, over the
    team-draft `pages` (with their chances); clicks on the common prefix ('ab') count for neither."""
    wins_a, wins_b = np.zeros(len(engaged)), np.zeros(len(engaged))
    for shown, teams, chance in pages:
        p = click_chances(shown, grades, top, shoppers, engaged)
        k = len(shown)
        margin = np.zeros((len(engaged), 2 * k + 1))  # column k + d: team a's clicks minus team b's = d
        margin[:, k] = 1.0
        for i, team in enumerate(teams):
            step = {"a": 1, "b": -1}.get(team)
            if step is None:
                continue
            margin = margin * (1 - p[:, i:i + 1]) + np.roll(margin, step, axis=1) * p[:, i:i + 1]
        wins_a += chance * margin[:, k + 1:].sum(axis=1)
        wins_b += chance * margin[:, :k].sum(axis=1)
    return wins_a, wins_b


def _spread(m1: np.ndarray, m2: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Mean, variance of one search and between-shopper variance, from (queries, engagement values) moments."""
    mean_e = m1.mean(axis=0)
    mean = float(weights @ mean_e)
    variance = float(weights @ m2.mean(axis=0)) - mean ** 2
    between = float(weights @ (mean_e - mean) ** 2)
    return {"mean": mean, "variance": max(variance, 0.0), "between": between}


def _needed(variance: float, delta: float, alpha: float, power: float) -> int | None:
    from scipy.stats import norm

    if delta == 0:
        return None
    z = float(norm.isf(alpha / 2) + norm.isf(1 - power))
    return int(np.ceil(z ** 2 * variance / delta ** 2))


def _power_at(searches: int, variance: float, delta: float, alpha: float) -> float | None:
    """The chance that a two-sided z-test at `alpha` over `searches` is significant (the far tail ignored)."""
    from scipy.stats import norm

    if delta == 0 or variance <= 0:
        return None
    return round(float(norm.cdf(abs(delta) / np.sqrt(variance / searches) - norm.isf(alpha / 2))), 3)


def exact_power(rankings: Mapping[str, tuple[Sequence[str], Sequence[str]]], qrels: dict[str, dict[str, int]],
                shoppers: Shoppers = Shoppers(), per_shopper: Sequence[int] = (1,), alpha: float = ALPHA,
                power: float = POWER, at: int = 3000) -> dict[str, Any]:
    """Searches (in all) an A/B split needs per metric and an interleaved experiment needs, for each number of
    searches a shopper in `per_shopper`, from each query's two rankings (`rankings`: query id -> (A's ids, B's ids),
    the first `shoppers.size` shown) and its judged grades; `power_at`: each design's power with `at` searches.
    Misuse: rankings deeper than the page (cut here)."""
    if not rankings:
        raise ConfigError("bench power: no judged query with rankings to compute from")
    if at < 1:
        raise ConfigError(f"--searches: expected at least 1, got {at}")
    if min(per_shopper, default=0) < 1:
        raise ConfigError(f"--per-shopper: expected counts of at least 1, got {list(per_shopper)}")
    top = max((g for judged in qrels.values() for g in judged.values()), default=1)
    engaged, weights = engagement_nodes(shoppers)
    k = shoppers.size
    moments: dict[str, dict[str, list[list[np.ndarray]]]] = {side: {m: [[], []] for m in METRICS} for side in "ab"}
    prefs: list[list[np.ndarray]] = [[], []]
    original: list[list[np.ndarray]] = [[], []]  # the original team draft (the common prefix drafted too)
    for qid in sorted(rankings):
        grades = qrels.get(qid, {})
        a, b = (list(r)[:k] for r in rankings[qid])
        for side, page in (("a", a), ("b", b)):
            for name, (m1, m2) in page_moments(click_chances(page, grades, top, shoppers, engaged)).items():
                moments[side][name][0].append(m1)
                moments[side][name][1].append(m2)
        for draft, shared_prefix in ((prefs, True), (original, False)):
            wins_a, wins_b = preference(team_draft_pages(a, b, k, shared_prefix), grades, top, shoppers, engaged)
            draft[0].append(wins_b - wins_a)  # D
            draft[1].append(wins_a + wins_b)  # D^2
    spread = {side: {m: _spread(np.array(m1), np.array(m2), weights) for m, (m1, m2) in by.items()}
              for side, by in moments.items()}
    d = _spread(np.array(prefs[0]), np.array(prefs[1]), weights)
    d_original = _spread(np.array(original[0]), np.array(original[1]), weights)
    win_b = float(weights @ ((np.array(prefs[1]) + np.array(prefs[0])) / 2).mean(axis=0))
    win_a = float(weights @ ((np.array(prefs[1]) - np.array(prefs[0])) / 2).mean(axis=0))
    table = []
    for m in per_shopper:
        def effect(s: dict[str, float]) -> float:
            return 1 + (m - 1) * s["between"] / s["variance"] if s["variance"] > 0 else 1.0

        interleaving = _needed(d["variance"] * effect(d), d["mean"], alpha, power)
        row: dict[str, Any] = {"per_shopper": m, "interleaving": interleaving, "interleaving_design_effect":
                               round(effect(d), 3), "interleaving_original_draft": _needed(
                                   d_original["variance"] * effect(d_original), d_original["mean"], alpha, power),
                               "ab": {}, "ab_design_effect": {}, "ab_over_interleaving": {},
                               "power_at": {"searches": at, "interleaving": _power_at(at, d["variance"] * effect(d),
                                                                                      d["mean"], alpha), "ab": {}}}
        for name in METRICS:
            sa, sb = spread["a"][name], spread["b"][name]
            variance = 2 * (sa["variance"] * effect(sa) + sb["variance"] * effect(sb))
            needed = _needed(variance, sb["mean"] - sa["mean"], alpha, power)
            row["power_at"]["ab"][name] = _power_at(at, variance, sb["mean"] - sa["mean"], alpha)
            row["ab"][name] = needed
            row["ab_design_effect"][name] = round((effect(sa) + effect(sb)) / 2, 3)
            row["ab_over_interleaving"][name] = round(needed / interleaving, 1) if needed and interleaving else None
        table.append(row)
    return {"queries": len(rankings), "alpha": alpha, "power": power,
            "shoppers": {"eta": shoppers.eta, "noise": shoppers.noise, "size": k,
                         "engagement": list(shoppers.engagement) if shoppers.engagement else None},
            "metrics": {name: {side: {key: round(v, 5) for key, v in spread[side][name].items()} for side in "ab"}
                        for name in METRICS},
            "interleaving": {"wins_a": round(win_a, 5), "wins_b": round(win_b, 5),
                             "ties": round(1 - win_a - win_b, 5), **{key: round(v, 5) for key, v in d.items()}},
            "searches_needed": table}


def pipeline_rankings(index: Any, queries: dict[str, str], a: str, b: str, k: int = 10
                      ) -> dict[str, tuple[list[str], list[str]]]:
    """Each query's first `k` ids from pipelines `a` and `b` of the index at `index`, as a search naming the
    pipeline gets them (nothing logged). Misuse: an index whose active models differ from the served ones."""
    from souk.engine import Engine

    engine = Engine.open(index)
    out = {}
    for qid, text in sorted(queries.items()):
        a_ids, b_ids = ([h.id for h in engine.search(text, pipeline=p, k=k, record=False, highlight=False,
                                                     suggest_instead=False).hits] for p in (a, b))
        out[qid] = (a_ids, b_ids)
    return out
