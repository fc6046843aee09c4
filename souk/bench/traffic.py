"""Simulated shoppers over real HTTP: `souk simulate` (and the traffic benchmark) drive a running `souk serve`.

A shopper takes a judged query (uniformly from the split), searches (`GET /search`, no pipeline named unless
given, a session id of its own), examines position k with probability k^-eta (the position-based model),
clicks an examined result with probability noise + (1 - 2 noise) (2^g - 1) / (2^gmax - 1) for its grade g
(unjudged = 0), and reports its clicks with one `POST /events`. With `next_page` P, a shopper who clicked nothing
on page 1 opens page 2 (`page=2`, same session) with probability P and examines it the same way from its top (a
shopper who turns the page looks at what it shows first; its impressions are logged at positions 11..20). Real
search logs have such page-2 requests; 0 (the default) is the older page-1-only shopper. Everything goes through
the server's API, so the searches, impressions and events are the ones a shop's page would produce.
Shoppers with several searches (`per_shopper` m, `engagement` (a, b)): consecutive searches belong to one shopper
(one session id, and with `ab` one arm for all of them, as A/B tests bucket users), each search a fresh query; the
shopper draws its engagement e ~ Beta(a, b) once and examines position k with probability e k^-eta. A shop's
shoppers differ in how much they look and click; that spread is what an A/B split of shoppers carries in its
variance and an interleaved comparison (both rankings on the same page) cancels (Chapelle, Joachims, Radlinski, Yue,
"Large-scale validation and analysis of interleaved search evaluation", TOIS 2012). The defaults (m = 1, no
engagement: every shopper e = 1) are the older independent searches.
Misuse: simulating on the split you evaluate on (simulate on train, evaluate on dev).
"""
from __future__ import annotations

import http.client
import json
import random
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from souk.errors import ConfigError, QueryError
from souk.evaluation.datasets import Dataset
from souk.limits import MAX_PAGE_SIZE
from souk.progress import progress_bar


@dataclass(frozen=True)
class Shoppers:
    """The click model of the simulated shoppers."""

    eta: float = 1.0
    noise: float = 0.05
    size: int = 10  # results a page shows (`--page-size`); page 2 starts at size + 1
    next_page: float = 0.0  # chance that a shopper with no click on page 1 opens page 2
    per_shopper: int = 1  # consecutive searches made by one shopper (one session, one A/B arm)
    engagement: tuple[float, float] | None = None  # Beta(a, b) of a shopper's examination scale; None: all 1

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_PAGE_SIZE:
            raise ConfigError(f"--page-size: expected 1..{MAX_PAGE_SIZE} results a page, got {self.size}")
        if not 0 <= self.next_page <= 1:
            raise ConfigError(f"--next-page: expected a probability in [0, 1], got {self.next_page}")
        if self.per_shopper < 1:
            raise ConfigError(f"--per-shopper: expected at least 1 search a shopper, got {self.per_shopper}")
        if self.engagement is not None and (len(self.engagement) != 2 or min(self.engagement) <= 0):
            raise ConfigError(f"--engagement: expected A,B > 0 (a Beta distribution), got {self.engagement}")

    @property
    def population(self) -> bool:
        """Whether shoppers differ or make several searches (the shopper-level draws use their own generator)."""
        return self.per_shopper > 1 or self.engagement is not None

    def examined(self, position: int, engaged: float = 1.0) -> float:
        return engaged * position ** -self.eta

    def attracted(self, grade: int, top: int) -> float:
        return self.noise + (1 - 2 * self.noise) * (2 ** max(grade, 0) - 1) / max(2 ** top - 1, 1)


class Client:
    """Keep-alive HTTP to one server; errors name the status and the server's message."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 60.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"--url: expected http://HOST:PORT, got {url!r}")
        self.host, self.port, self.timeout = parts.hostname, parts.port or 80, timeout
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def simulate(url: str, data: Dataset, searches: int, seed: int = 13, key: str | None = None,
             pipeline: str | None = None, shoppers: Shoppers = Shoppers(), progress: bool = True,
             ab: tuple[str, ...] | None = None, index: Path | None = None) -> dict[str, Any]:
    """Run `searches` simulated shoppers against the server at `url`; returns counts and timings. With `ab`
    each search names one of the two pipelines at random (an A/B split; named searches are never interleaved) and
    the result adds, per pipeline, the searches, the share with a click and the expected share (the shoppers'
    exact click probability on the pages shown), and the searches an A/B split needs (`ab_searches_needed`). With
    several searches a shopper the arm is drawn once per shopper. The shopper-level draws (query, engagement, arm)
    come from their own generator, so two runs with one seed and one `shoppers` meet the same shoppers. With `index`
    (the server's index directory, read after the run) the result adds `expected_interleaving`: the interleaved
    searches' exact expected wins (`expected_interleaving`), the counterpart of the arms' expected click-through."""
    if searches < 1:
        raise ConfigError(f"--searches: expected at least 1, got {searches}")
    if ab is not None and (len(ab) != 2 or ab[0] == ab[1] or pipeline):
        raise ConfigError(f"--ab: expected two different pipelines as A,B (and no --pipeline), got {','.join(ab)!r}")
    rng = random.Random(seed)
    # the shoppers (queries, engagement, arm) apart from their clicks: the same population in every run of a seed;
    # the older independent searches keep their single generator (and their numbers)
    people = random.Random(f"shoppers-{seed}") if shoppers.population else rng
    engaged, arm = 1.0, None  # the current shopper's (the older searches draw an arm each)
    arms: dict[str, list[float]] = {name: [0, 0, 0.0] for name in ab or ()}  # searches, clicked, expected clicked
    qids = sorted(data.queries)
    if not qids:
        raise ConfigError("the dataset has no judged queries to draw shoppers from")
    top = max((g for judged in data.qrels.values() for g in judged.values()), default=1)
    client = Client(url, key)
    clicks = accepted = clicked_searches = 0
    pages: dict[str, tuple[dict[str, int], float]] = {}  # search id -> the grades and the engagement it met
    t0, started = time.monotonic(), time.time()
    with progress_bar("simulated searches", searches, enabled=progress) as advance:
        for n in range(searches):
            shopper, first = divmod(n, shoppers.per_shopper)
            if shoppers.population and not first:
                engaged = people.betavariate(*shoppers.engagement) if shoppers.engagement else 1.0
                second = people.random() < 0.5  # drawn in every run, so the population is the same
                arm = ab[second] if ab else None
            qid = people.choice(qids)
            params = {"q": data.queries[qid], "size": shoppers.size, "session": f"sim-{seed}-{shopper}"}
            if not shoppers.population:
                arm = rng.choice(ab) if ab else None
            if pipeline or arm:
                params["pipeline"] = pipeline or arm
            grades = data.qrels[qid]
            events, no_click, sid = _page(client, params, grades, top, shoppers, rng, engaged)
            pages[sid] = (grades, engaged)
            if not events and shoppers.next_page and rng.random() < shoppers.next_page:
                events, no_click_2, sid = _page(client, {**params, "page": 2}, grades, top, shoppers, rng, engaged)
                pages[sid] = (grades, engaged)
                no_click *= 1 - shoppers.next_page * (1 - no_click_2)  # as expected over the shoppers who turn
            if arm:
                arms[arm][0] += 1
                arms[arm][1] += bool(events)
                arms[arm][2] += 1 - no_click
            if events:
                status, ack = client.call("POST", "/events", events)
                if status != 202:
                    raise QueryError(f"POST /events answered {status}: {(ack or {}).get('error')}")
                clicks += len(events)
                accepted += ack["accepted"]
                clicked_searches += 1
            advance(1)
    seconds = time.monotonic() - t0
    result = {"searches": searches, "clicks": clicks, "accepted": accepted, "clicked_searches": clicked_searches,
              "seconds": round(seconds, 1), "searches_per_s": round(searches / max(seconds, 1e-9), 1),
              "shoppers": {"eta": shoppers.eta, "noise": shoppers.noise, "size": shoppers.size,
                           "next_page": shoppers.next_page, "per_shopper": shoppers.per_shopper,
                           "engagement": list(shoppers.engagement) if shoppers.engagement else None},
              "data": f"{data.name}/{data.split}", "seed": seed}
    if ab:
        from souk.events.interleave import ab_searches_needed

        split = {name: {"searches": int(n), "ctr": round(c / n, 4) if n else None,
                        "expected_ctr": round(e / n, 4) if n else None} for name, (n, c, e) in arms.items()}
        (na, _, ea), (nb, _, eb) = arms[ab[0]], arms[ab[1]]
        result["ab"] = {"a": ab[0], "b": ab[1], "arms": split,
                        "searches_needed": ab_searches_needed(ea / na, eb / nb) if na and nb else None}
    if index is not None:
        from souk.events.log import event_log

        records = event_log(index).read(started - 1, kinds=("search",))
        result["expected_interleaving"] = expected_interleaving(records, pages, top, shoppers)
    return result


def expected_interleaving(records: Any, pages: dict[str, tuple[dict[str, int], float]], top: int,
                          shoppers: Shoppers) -> dict[str, Any]:
    """The expected outcome of the interleaved searches among `records` (logged searches with `teams`) that
    `pages` knows (search id -> grades and the shopper's engagement): per search, the exact chances that team a's
    documents get more clicks than team b's, fewer, or as many, under the shoppers' click model (clicks at the
    positions independent), summed; and the searches a sign test then needs at 80% power (`searches_needed`,
    independent searches). Misuse: records of another run (their search ids are unknown and skipped)."""
    from souk.events.interleave import interleaving_searches_needed

    wins_a = wins_b = ties = 0.0
    for r in records:
        if not isinstance(r.get("teams"), list) or str(r.get("search_id")) not in pages:
            continue
        grades, engaged = pages[str(r["search_id"])]
        margin = {0: 1.0}  # distribution of (team a's clicks - team b's clicks)
        for i, (doc, team) in enumerate(zip(r.get("shown") or [], r["teams"])):
            step = {"a": 1, "b": -1}.get(team)
            if step is None:
                continue
            p = shoppers.examined(i + 1, engaged) * shoppers.attracted(grades.get(str(doc), 0), top)
            moved: dict[int, float] = {}
            for d, q in margin.items():
                moved[d + step] = moved.get(d + step, 0.0) + q * p
                moved[d] = moved.get(d, 0.0) + q * (1 - p)
            margin = moved
        wins_a += sum(q for d, q in margin.items() if d > 0)
        wins_b += sum(q for d, q in margin.items() if d < 0)
        ties += margin.get(0, 0.0)
    n = wins_a + wins_b + ties
    needed = interleaving_searches_needed(*(round(x / n * 1_000_000) for x in (wins_a, wins_b, ties))) if n else None
    return {"searches": round(n), "wins_a": round(wins_a, 3), "wins_b": round(wins_b, 3), "ties": round(ties, 3),
            "searches_needed": needed}


def _page(client: Client, params: dict[str, Any], grades: dict[str, int], top: int, shoppers: Shoppers,
          rng: random.Random, engaged: float = 1.0) -> tuple[list[dict[str, Any]], float, str]:
    """One page searched and examined by a shopper: its clicks as events, the chance it had of none, its id."""
    status, body = client.call("GET", "/search?" + urllib.parse.urlencode(params))
    if status != 200:
        raise QueryError(f"GET /search answered {status}: {(body or {}).get('error')}")
    events, no_click = [], 1.0
    for i, hit in enumerate(body["hits"]):
        position = body.get("offset", 0) + i + 1
        examined = shoppers.examined(i + 1, engaged)
        attracted = shoppers.attracted(grades.get(hit["id"], 0), top)
        no_click *= 1 - examined * attracted
        if rng.random() < examined and rng.random() < attracted:
            events.append({"search_id": body["search_id"], "type": "click", "id": hit["id"], "position": position})
    return events, no_click, str(body["search_id"])


# the files `make bench-traffic` writes into its directory, read by `report`
REPORT_FILES = {"bm25": "eval-bm25.json", "judged_ltr": "eval-ltr-judged.json", "click_ltr": "eval-ltr-events.json",
                "experiment": "experiments.json", "ab": "simulate-ab.json"}
# the exact searches needed for 80% power (`souk bench power`): page-1 shoppers alike, and a population of shoppers
POWER_FILES = {"shoppers_alike": "power.json", "shoppers_differ": "power-shoppers.json"}
# the shopper-population steps (several searches a shopper, engagement drawn per shopper), read when present
SHOPPER_FILES = {"experiment": "experiments-shoppers.json", "ab": "simulate-ab-shoppers.json",
                 "interleave": "simulate-interleave-shoppers.json"}


def report(directory: Path) -> dict[str, Any]:
    """The traffic benchmark's result as one object, from the JSON files of its steps in `directory`: dev nDCG@10 of
    BM25, of ltr fitted on the judged train split and of ltr fitted from clicks alone; the click-fitted ltr's share
    of the judged gain over BM25; the interleaved experiment (BM25 vs the click-fitted ltr: searches, wins, p-value,
    the searches after which it stayed significant) and the searches an A/B split of the same pair needs (from the
    simulated shoppers' click-through on each pipeline's pages); `bootstrap`: the searches each needs for p < 0.05
    with 80% power, resampling the logged searches of each; `shoppers` (None without those steps): the same from
    one population of shoppers with several searches each, A/B split by shopper, resampling shoppers; `exact` (None
    without those steps): the searches each design needs, exact under the click model (`souk.bench.power`).
    Misuse: reading numbers of different indexes."""
    found: dict[str, Any] = {}
    for name, file in REPORT_FILES.items():
        path = Path(directory) / file
        try:
            found[name] = _step_result(path)
        except (OSError, ValueError, IndexError) as exc:
            raise ConfigError(f"bench traffic: no result of its step {name} ({file}) in the directory; run "
                              f"`make bench-traffic` first ({type(exc).__name__})") from None
    bm25, judged, clicks = (float(found[k]["ndcg@10"]) for k in ("bm25", "judged_ltr", "click_ltr"))
    experiment, ab = found["experiment"], found["ab"].get("ab") or {}
    interleaving = experiment.get("significant_at")
    needed = ab.get("searches_needed")
    return {
        "dataset": found["bm25"].get("dataset"), "split": found["bm25"].get("split"),
        "ndcg@10": {"bm25": round(bm25, 4), "judged_ltr": round(judged, 4), "click_ltr": round(clicks, 4)},
        "click_gain": round(clicks - bm25, 4), "judged_gain": round(judged - bm25, 4),
        "share_of_judged_gain": round((clicks - bm25) / (judged - bm25), 3) if judged != bm25 else None,
        "interleaving": {k: experiment.get(k) for k in ("experiment", "searches", "wins_a", "wins_b", "ties",
                                                        "p_value", "winner", "significant_at")},
        "offline_winner": "b" if clicks > bm25 else "a",
        "ab": {"searches": found["ab"].get("searches"), "arms": ab.get("arms"), "searches_needed": needed},
        "interleaving_searches_to_significance": interleaving,
        "ab_searches_needed": needed,
        "ab_over_interleaving": round(needed / interleaving, 1) if needed and interleaving else None,
        # the same question at 80% power for both, by bootstrap over the logged searches of each
        # (`souk experiments --ab`: `interleaving_searches_needed`, `ab_bootstrap_searches_needed`)
        "bootstrap": _bootstrap(experiment),
        "shoppers": _shoppers(Path(directory)),
        "exact": _exact(Path(directory)),
    }


def _step_result(path: Path) -> Any:
    """A step's result: the JSON object on the last line of what it printed (`tee`'d into `path`); raises OSError,
    ValueError or IndexError (an empty file) for the caller to handle."""
    return json.loads(path.read_text(encoding="utf-8").strip().splitlines()[-1])


def _exact(directory: Path) -> dict[str, Any] | None:
    """`souk bench power`'s rows (searches for 80% power, interleaving and A/B by metric), when its steps ran."""
    found: dict[str, Any] = {}
    for name, file in POWER_FILES.items():
        try:
            step = _step_result(directory / file)
        except (OSError, ValueError, IndexError):
            continue
        keys = ("per_shopper", "interleaving", "interleaving_original_draft", "ab", "ab_over_interleaving")
        found[name] = {"engagement": (step.get("shoppers") or {}).get("engagement"),
                       "rows": [{k: row.get(k) for k in keys} for row in step.get("searches_needed") or []]}
    return found or None


def _shoppers(directory: Path) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for name, file in SHOPPER_FILES.items():
        try:
            found[name] = _step_result(directory / file)
        except (OSError, ValueError, IndexError):
            return None
    experiment, ab = found["experiment"], found["experiment"].get("ab") or {}
    interleaved, split = experiment.get("shopper_searches_needed"), ab.get("shopper_searches_needed")
    design, expected = ab.get("design_effect"), (found["ab"].get("ab") or {}).get("searches_needed")
    ab_expected = round(expected * design) if expected and design else None
    per_search = experiment.get("searches_needed")
    interleaving_design = round(interleaved / per_search, 3) if interleaved and per_search else None
    i_expected = (found["interleave"].get("expected_interleaving") or {}).get("searches_needed")
    i_shoppers = round(i_expected * interleaving_design) if i_expected and interleaving_design else None
    return {**{k: (found["ab"].get("shoppers") or {}).get(k) for k in ("per_shopper", "engagement")},
            "interleaving": {k: experiment.get(k) for k in ("searches", "wins_a", "wins_b", "ties", "p_value",
                                                            "winner", "significant_at")},
            "ab": {k: ab.get(k) for k in ("searches_a", "searches_b", "shoppers_a", "shoppers_b", "ctr_a", "ctr_b",
                                          "shopper_p_value")},
            # 80% power by bootstrap: over searches (as if independent) and over shoppers (what an A/B test of
            # bucketed shoppers faces; interleaving still credited per search)
            "interleaving_searches_needed": experiment.get("searches_needed"),
            "interleaving_shopper_searches_needed": interleaved,
            "ab_searches_needed": ab.get("searches_needed"), "ab_shopper_searches_needed": split,
            "ab_over_interleaving": round(split / interleaved, 1) if interleaved and split else None,
            # less noisy for A/B: the simulator's exact expected click-through of each arm (the textbook size for
            # independent searches) times the design effect measured on the shoppers (clustered over naive variance)
            "ab_design_effect": design, "ab_expected_searches_needed": expected,
            "ab_expected_shopper_searches_needed": ab_expected,
            # and for interleaving: the exact expected wins of its searches (`simulate --index`), times the factor
            # resampling shoppers cost in its bootstrap
            "interleaving_design_effect": interleaving_design, "interleaving_expected_searches_needed": i_expected,
            "interleaving_expected_shopper_searches_needed": i_shoppers,
            "expected_ab_over_interleaving": round(ab_expected / i_shoppers, 1) if ab_expected and i_shoppers else None}


def _bootstrap(experiment: dict[str, Any]) -> dict[str, Any]:
    interleaved, split = experiment.get("searches_needed"), (experiment.get("ab") or {}).get("searches_needed")
    return {"interleaving_searches_needed": interleaved, "ab_searches_needed": split,
            "ab_over_interleaving": round(split / interleaved, 1) if interleaved and split else None}
