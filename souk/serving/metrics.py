"""Request metrics in the Prometheus text format: counts by route and status, latency histograms."""
from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters and histograms; `render` writes the exposition text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_S) + 1))
        self._sums: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, status)] += 1
            buckets = self._buckets[route]
            for i, bound in enumerate(BUCKETS_S):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-1] += 1
            self._sums[route] += seconds

    def render(self, gauges: dict[str, float]) -> str:
        lines = ["# HELP souk_requests_total HTTP requests by method, route and status.",
                 "# TYPE souk_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'souk_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += ["# HELP souk_request_seconds Request latency by route.", "# TYPE souk_request_seconds histogram"]
            for route, buckets in sorted(self._buckets.items()):
                for bound, n in zip(BUCKETS_S, buckets):
                    lines.append(f'souk_request_seconds_bucket{{route="{route}",le="{bound}"}} {n}')
                lines.append(f'souk_request_seconds_bucket{{route="{route}",le="+Inf"}} {buckets[-1]}')
                lines.append(f'souk_request_seconds_sum{{route="{route}"}} {self._sums[route]:.6f}')
                lines.append(f'souk_request_seconds_count{{route="{route}"}} {buckets[-1]}')
        for name, value in gauges.items():
            lines += [f"# TYPE souk_{name} gauge", f"souk_{name} {value}"]
        return "\n".join(lines) + "\n"
