"""Telegram's flood limits as token buckets, and injectable network faults."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Limits:
    """Rate limits per bot and per chat; change the fields at runtime, `enabled` included."""

    enabled: bool = True
    bot_rate: float = 30.0
    bot_burst: float = 30.0
    paid_rate: float = 1000.0
    paid_burst: float = 1000.0
    private_rate: float = 1.0
    # A reply of two or three messages to one command passes on real Telegram.
    private_burst: float = 4.0
    group_rate: float = 20.0 / 60.0
    group_burst: float = 20.0


@dataclass
class Faults:
    """Network trouble to inject: latency on every call, errors and stalls on send/edit calls."""

    latency: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    # A 429 burst: for this many seconds after the faults are set, every send/edit call is
    # refused with "Too Many Requests: retry after flood_retry_after" (as Telegram does when
    # a bot floods, whatever its own pacing).
    flood_seconds: float = 0.0
    flood_retry_after: int = 1
    seed: int | None = None


@dataclass(slots=True)
class TokenBucket:
    """A token bucket whose rate and capacity are passed at each use (limits can change)."""

    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self, rate: float, capacity: float, now: float) -> None:
        """Add the tokens earned since the last use, up to capacity."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(capacity, self.tokens + elapsed * rate)
        self.stamp = now

    def wait_time(self, rate: float) -> float:
        """Seconds until one whole token is available (0 when one is there now)."""
        if self.tokens >= 1.0 - 1e-9:  # float sums of small refills fall just short of 1
            return 0.0
        return (1.0 - self.tokens) / rate if rate > 0 else math.inf


class RateLimiter:
    """The buckets of one emulator: per bot, per paid bot, per (bot, chat)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic):
        """clock is injectable so tests can stop time; it defaults to the real one."""
        self.limits = limits
        self.clock = clock
        self._buckets: dict[tuple[object, ...], TokenBucket] = {}

    def reset(self) -> None:
        """Forget all buckets (they start full again)."""
        self._buckets.clear()

    def _bucket(self, key: tuple[object, ...], capacity: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(capacity, self.clock())
            self._buckets[key] = bucket
        return bucket

    def acquire(
        self, bot_id: int, chat_id: int, chat_type: str, *, send: bool, paid: bool = False
    ) -> int:
        """Take one token from every bucket the call counts toward.

        Returns 0 on success, else the whole seconds to wait (>= 1); a rejected call takes
        no token from any bucket.
        """
        limits = self.limits
        if not limits.enabled:
            return 0
        now = self.clock()
        if chat_type == "private":
            rate, capacity = limits.private_rate, limits.private_burst
        else:
            rate, capacity = limits.group_rate, limits.group_burst
        checks: list[tuple[TokenBucket, float, float]] = []
        chat_bucket = self._bucket(("chat", bot_id, chat_id), capacity)
        checks.append((chat_bucket, rate, capacity))
        if send:
            if paid:
                checks.append(
                    (
                        self._bucket(("paid", bot_id), limits.paid_burst),
                        limits.paid_rate,
                        limits.paid_burst,
                    )
                )
            else:
                bot_bucket = self._bucket(("bot", bot_id), limits.bot_burst)
                checks.append((bot_bucket, limits.bot_rate, limits.bot_burst))
        wait = 0.0
        for bucket, bucket_rate, bucket_capacity in checks:
            bucket.refill(bucket_rate, bucket_capacity, now)
            wait = max(wait, bucket.wait_time(bucket_rate))
        if wait > 0:
            # a zero rate never refills; an hour stands in for "never"
            return 3600 if math.isinf(wait) else max(1, math.ceil(wait))
        for bucket, _rate, _capacity in checks:
            bucket.tokens -= 1.0
        return 0
