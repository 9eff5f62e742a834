"""Request counts and latencies in the Prometheus text format (no client library needed),
added up over the worker processes of ``kbqa serve --workers N``."""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from pathlib import Path

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters and latency histograms. With `shared_dir` (``kbqa serve --workers N``) each
    worker process also keeps its counts in ``shared_dir/metrics-<pid>.json`` and `render`
    adds up every worker's, so ``/metrics`` gives the server's totals whichever worker answers."""

    def __init__(self, shared_dir: str | Path | None = None, worker: str | None = None) -> None:
        self._lock = threading.Lock()
        self._shared = Path(shared_dir) if shared_dir else None
        self._own = self._shared / f"metrics-{worker or os.getpid()}.json" if self._shared else None
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
            self._save()

    def answered(self, kb: str, found: bool) -> None:
        with self._lock:
            self._answers[(kb, "true" if found else "false")] += 1
            self._save()

    def _state(self) -> dict:
        return {
            "count": [[*k, v] for k, v in self._count.items()],
            "sum": [[*k, v] for k, v in self._sum.items()],
            "n": [[*k, v] for k, v in self._n.items()],
            "buckets": [[*k, v] for k, v in self._buckets.items()],
            "answers": [[*k, v] for k, v in self._answers.items()],
        }

    def _save(self) -> None:
        if self._own is None:
            return
        tmp = self._own.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state()), encoding="utf-8")
        os.replace(tmp, self._own)

    def _totals(self) -> "Metrics":
        """This process's counts, plus every other worker's when they are shared."""
        if self._shared is None:
            return self
        total = Metrics()
        states = [self._state()]
        for path in sorted(self._shared.glob("metrics-*.json")):
            if path != self._own:
                try:
                    states.append(json.loads(path.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue  # a worker is writing it just now: its next request brings it back
        for state in states:
            for *k, v in state["count"]:
                total._count[tuple(k)] += v
            for *k, v in state["sum"]:
                total._sum[tuple(k)] += v
            for *k, v in state["n"]:
                total._n[tuple(k)] += v
            for *k, v in state["buckets"]:
                total._buckets[tuple(k)] = [a + b for a, b in zip(total._buckets[tuple(k)], v)]
            for *k, v in state["answers"]:
                total._answers[tuple(k)] += v
        return total

    def render(self) -> str:
        if self._shared is not None:
            with self._lock:
                total = self._totals()
            return total.render()
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
