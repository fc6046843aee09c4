"""Simulated shoppers over real HTTP: `souk simulate` (and the traffic benchmark) drive a running `souk serve`.

A shopper takes a judged query (uniformly from the split), searches (`GET /search`, no pipeline named unless
given, a session id of its own), examines position k with probability k^-eta (the position-based model),
clicks an examined result with probability noise + (1 - 2 noise) (2^g - 1) / (2^gmax - 1) for its grade g
(unjudged = 0), and reports its clicks with one `POST /events`. Everything goes through the server's API, so
the searches, impressions and events are the ones a shop's page would produce.
Misuse: simulating on the split you evaluate on (simulate on train, evaluate on dev).
"""
from __future__ import annotations

import http.client
import json
import random
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from souk.errors import ConfigError, QueryError
from souk.evaluation.datasets import Dataset
from souk.progress import progress_bar


@dataclass(frozen=True)
class Shoppers:
    """The click model of the simulated shoppers."""

    eta: float = 1.0
    noise: float = 0.05
    size: int = 10

    def examined(self, position: int) -> float:
        return position ** -self.eta

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
             pipeline: str | None = None, shoppers: Shoppers = Shoppers(), progress: bool = True) -> dict[str, Any]:
    """Run `searches` simulated shoppers against the server at `url`; returns counts and timings."""
    if searches < 1:
        raise ConfigError(f"--searches: expected at least 1, got {searches}")
    rng = random.Random(seed)
    qids = sorted(data.queries)
    if not qids:
        raise ConfigError("the dataset has no judged queries to draw shoppers from")
    top = max((g for judged in data.qrels.values() for g in judged.values()), default=1)
    client = Client(url, key)
    clicks = accepted = clicked_searches = 0
    t0 = time.monotonic()
    with progress_bar("simulated searches", searches, enabled=progress) as advance:
        for n in range(searches):
            qid = rng.choice(qids)
            params = {"q": data.queries[qid], "size": shoppers.size, "session": f"sim-{seed}-{n}"}
            if pipeline:
                params["pipeline"] = pipeline
            status, body = client.call("GET", "/search?" + urllib.parse.urlencode(params))
            if status != 200:
                raise QueryError(f"GET /search answered {status}: {(body or {}).get('error')}")
            grades = data.qrels[qid]
            events = []
            for i, hit in enumerate(body["hits"]):
                position = body.get("offset", 0) + i + 1
                if rng.random() < shoppers.examined(position) and rng.random() < shoppers.attracted(
                    grades.get(hit["id"], 0), top
                ):
                    events.append({"search_id": body["search_id"], "type": "click", "id": hit["id"],
                                   "position": position})
            if events:
                status, ack = client.call("POST", "/events", events)
                if status != 202:
                    raise QueryError(f"POST /events answered {status}: {(ack or {}).get('error')}")
                clicks += len(events)
                accepted += ack["accepted"]
                clicked_searches += 1
            advance(1)
    seconds = time.monotonic() - t0
    return {"searches": searches, "clicks": clicks, "accepted": accepted, "clicked_searches": clicked_searches,
            "seconds": round(seconds, 1), "searches_per_s": round(searches / max(seconds, 1e-9), 1),
            "shoppers": {"eta": shoppers.eta, "noise": shoppers.noise, "size": shoppers.size},
            "data": f"{data.name}/{data.split}", "seed": seed}
