"""Per-user token buckets for the order routes (each replica keeps its own)."""

from __future__ import annotations

from dataclasses import dataclass


class RateLimited(Exception):
    """Too many requests; ``retry_after_s`` says when one more will be allowed (HTTP 429)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; time is passed in."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; return 0 on success, else the seconds until one is available."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class UserRateLimiter:
    """One bucket per user. A burst of one second's worth of requests is allowed."""

    def __init__(self, rate_per_s: float, burst: float | None = None, what: str = "order") -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.what = what
        self._rate = rate_per_s
        self._burst = burst if burst is not None else max(1.0, rate_per_s)
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, username: str, now: float) -> None:
        bucket = self._buckets.get(username)
        if bucket is None:
            bucket = self._buckets[username] = TokenBucket(self._rate, self._burst, self._burst, now)
        wait = bucket.take(now)
        if wait > 0:
            raise RateLimited(f"{self.what} rate limit of {self._rate:g}/s reached for {username}", wait)
