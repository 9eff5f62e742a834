"""The per-key token bucket (app/server/rate_limit.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from kbqa.app.server.auth import KeysError, parse_keys_file
from kbqa.app.server.rate_limit import RateLimiter, retry_after


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_burst_then_one_request_per_interval_per_key():
    clock = Clock()
    limiter = RateLimiter(6, clock)  # 6 a minute: a burst of 6, then one every 10 s
    assert [limiter.wait_s("a") for _ in range(6)] == [0.0] * 6
    assert limiter.wait_s("a") == pytest.approx(10.0)
    assert limiter.wait_s("b") == 0.0  # each key has its own bucket
    clock.now += 5
    assert limiter.wait_s("a") == pytest.approx(5.0)
    clock.now += 5
    assert limiter.wait_s("a") == 0.0 and limiter.wait_s("a") > 0
    clock.now += 3600  # refills up to the burst, not beyond
    assert sum(limiter.wait_s("a") == 0.0 for _ in range(10)) == 6


def test_a_keys_own_limit_overrides_the_servers_and_zero_means_none():
    limiter = RateLimiter(0, Clock())
    assert all(limiter.wait_s("free") == 0.0 for _ in range(100))
    assert limiter.wait_s("slow", 1) == 0.0 and limiter.wait_s("slow", 1) == pytest.approx(60.0)
    assert all(RateLimiter(1, Clock()).wait_s("k", 0) == 0.0 for _ in range(5))
    assert retry_after(0.2) == "1" and retry_after(59.01) == "60"
    with pytest.raises(ValueError):
        RateLimiter(-1)


def test_keys_file_rate_limit_is_checked(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text('[[key]]\nname = "a"\ntoken = "aaaaaaaaaa"\nkbs = { "*" = "r" }\nrate_limit = 30\n', encoding="utf-8")
    assert parse_keys_file(path)[0].rate_limit == 30.0
    path.write_text('[[key]]\nname = "a"\ntoken = "aaaaaaaaaa"\nkbs = { "*" = "r" }\nrate_limit = "lots"\n', encoding="utf-8")
    with pytest.raises(KeysError, match=r"key #1: key 'a': rate_limit must be a number"):
        parse_keys_file(path)
