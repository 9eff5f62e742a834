"""Request counts and latencies in the Prometheus text format (no client library needed)."""
from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str, str], int] = defaultdict(int)
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._n: dict[tuple[str, str], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self._answers: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._count[(method, route, str(status))] += 1
            key = (method, route)
            self._sum[key] += seconds
            self._n[key] += 1
            buckets = self._buckets[key]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1

    def answered(self, kb: str, found: bool) -> None:
        with self._lock:
            self._answers[(kb, "true" if found else "false")] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP kbqa_http_requests_total HTTP requests by method, route and status.",
                "# TYPE kbqa_http_requests_total counter",
            ]
            for (method, route, status), n in sorted(self._count.items()):
                lines.append(f"kbqa_http_requests_total{_labels(method=method, route=route, status=status)} {n}")
            lines += [
                "# HELP kbqa_http_request_duration_seconds HTTP request latency (until the last byte is sent).",
                "# TYPE kbqa_http_request_duration_seconds histogram",
            ]
            for (method, route), buckets in sorted(self._buckets.items()):
                for bound, n in zip(BUCKETS, buckets):
                    lines.append(f"kbqa_http_request_duration_seconds_bucket{_labels(method=method, route=route, le=repr(bound))} {n}")
                lines.append(f"kbqa_http_request_duration_seconds_bucket{_labels(method=method, route=route, le='+Inf')} {self._n[(method, route)]}")
                lines.append(f"kbqa_http_request_duration_seconds_sum{_labels(method=method, route=route)} {self._sum[(method, route)]:.6f}")
                lines.append(f"kbqa_http_request_duration_seconds_count{_labels(method=method, route=route)} {self._n[(method, route)]}")
            lines += [
                "# HELP kbqa_answers_total Answers given, by knowledge base and whether anything relevant was found.",
                "# TYPE kbqa_answers_total counter",
            ]
            for (kb, found), n in sorted(self._answers.items()):
                lines.append(f"kbqa_answers_total{_labels(kb=kb, found=found)} {n}")
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request until its response body is complete."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import time

        started = time.perf_counter()
        status = {"code": 500}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None)
            if path is None:
                path = "/ui" if scope.get("path", "").startswith("/ui") else "(unmatched)"
            self.metrics.observe(scope.get("method", "GET"), path, status["code"], time.perf_counter() - started)
