"""Per-key rate limits for the API: a token bucket per key name.

A key may make `per_minute` requests a minute, in bursts of up to `burst` (default: a
minute's worth, at least 1); beyond that a request is refused with 429 and ``Retry-After``
(app/server/access.py). The server-wide limit is ``kbqa serve --rate-limit N``; a key's own
``rate_limit = N`` in the keys file overrides it for that key. 0 or unset: no limit. With
``--workers N`` each worker process keeps its own buckets.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: float = 0.0, clock: Callable[[], float] = time.monotonic):
        if per_minute < 0:
            raise ValueError(f"rate limit: must be 0 (none) or positive, not {per_minute}")
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key name -> (tokens left, when counted)
        self._lock = threading.Lock()

    def wait_s(self, key: str, per_minute: float | None = None) -> float:
        """Take one request from `key`'s bucket: 0 when allowed, else the seconds until one is."""
        rate = self.per_minute if per_minute is None else per_minute
        if not rate:
            return 0.0
        burst = max(1.0, rate)
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - then) * rate / 60.0)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) * 60.0 / rate


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
