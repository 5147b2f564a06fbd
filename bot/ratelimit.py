"""Sending within Telegram's limits: bot-wide, per person, per group; 429s obeyed per chat.

Every Bot API call that sends or edits goes through :class:`TelegramRateLimiter` (PTB calls it
for us). Each limit is a cell-rate schedule (GCRA): a call reserves the next free slot and
waits for it, so thousands of waiting sends queue in order without waking each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.telegram_io import retry_after_seconds

log = logging.getLogger(__name__)

SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "sendMediaGroup",
        "copyMessage",
        "forwardMessage",
        "sendAudio",
        "sendVideo",
        "sendAnimation",
        "sendVoice",
        "sendPoll",
        "sendLocation",
        "sendContact",
        "sendSticker",
    }
)
EDIT_METHODS = frozenset(
    {"editMessageText", "editMessageReplyMarkup", "editMessageCaption", "editMessageMedia"}
)


class Schedule:
    """One rate (``rate`` calls per second, bursts of ``burst``) as a reservation schedule."""

    __slots__ = ("_burst_window", "_interval", "next_free", "touched")

    def __init__(self, rate: float, burst: int = 1) -> None:
        self._interval = 1.0 / rate
        self._burst_window = (max(1, burst) - 1) * self._interval
        self.next_free = 0.0
        self.touched = 0.0

    def reserve(self, now: float, not_before: float = 0.0) -> float:
        """Reserve the next slot at or after ``not_before``; returns its time."""
        slot = max(self.next_free, now - self._burst_window, not_before)
        self.next_free = slot + self._interval
        self.touched = now
        return slot

    def pause_until(self, moment: float) -> None:
        """Telegram said to wait: nothing goes out on this schedule before ``moment``."""
        self.next_free = max(self.next_free, moment)


class TelegramRateLimiter(BaseRateLimiter[dict]):
    """PTB rate limiter with Telegram's three limits and per-chat handling of 429."""

    def __init__(
        self,
        *,
        per_second: float = 29.0,
        private_per_second: float = 1.0,
        group_per_minute: float = 19.0,
        paid_per_second: float = 900.0,
        private_burst: int = 3,
        max_retries: int = 3,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._global = Schedule(per_second, burst=max(1, int(per_second)))
        self._paid = Schedule(paid_per_second, burst=max(1, int(paid_per_second // 10)))
        self._private_rate = private_per_second
        self._private_burst = private_burst
        self._group_rate = group_per_minute / 60.0
        self._group_burst = max(1, int(group_per_minute // 2))
        self._chats: dict[int | str, Schedule] = {}
        self._max_retries = max_retries
        self._monotonic = monotonic
        self._last_prune = 0.0
        self._recent_429: list[tuple[float, int | str]] = []
        self.retry_after_count = 0

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    def _chat_schedule(self, chat_id: int | str, now: float) -> Schedule:
        schedule = self._chats.get(chat_id)
        if schedule is None:
            is_group = isinstance(chat_id, str) or int(chat_id) < 0
            schedule = (
                Schedule(self._group_rate, self._group_burst)
                if is_group
                else Schedule(self._private_rate, self._private_burst)
            )
            self._chats[chat_id] = schedule
        if now - self._last_prune > 60:
            self._prune(now)
        return schedule

    def _prune(self, now: float) -> None:
        # A schedule idle for a minute is back to a full burst: forgetting it changes nothing.
        self._last_prune = now
        for chat_id in [c for c, s in self._chats.items() if now - s.touched > 60]:
            if self._chats[chat_id].next_free < now:
                del self._chats[chat_id]

    async def _wait_for_slot(self, endpoint: str, chat_id: Any, paid: bool) -> None:
        now = self._monotonic()
        chat_slot = 0.0
        if chat_id is not None:
            chat_slot = self._chat_schedule(_chat_key(chat_id), now).reserve(now)
        slot = chat_slot
        if endpoint in SEND_METHODS:
            slot = (self._paid if paid else self._global).reserve(now, not_before=chat_slot)
        delay = slot - now
        if delay > 0:
            await asyncio.sleep(delay)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict | list[dict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: dict | None,
    ) -> bool | dict | list[dict]:
        """Wait for a free slot, call the Bot API, and on 429 wait as told and try again."""
        limited = endpoint in SEND_METHODS or endpoint in EDIT_METHODS
        if not limited:
            return await callback(*args, **kwargs)
        chat_id = data.get("chat_id")
        paid = bool(data.get("allow_paid_broadcast"))
        for attempt in range(self._max_retries + 1):
            await self._wait_for_slot(endpoint, chat_id, paid)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                self.retry_after_count += 1
                seconds = retry_after_seconds(error)
                now = self._monotonic()
                until = now + seconds
                if chat_id is not None:
                    self._chat_schedule(_chat_key(chat_id), now).pause_until(until)
                if chat_id is None or self._looks_bot_wide(_chat_key(chat_id), now):
                    self._global.pause_until(until)
                log.info("429 on %s: waiting %.1fs (attempt %d)", endpoint, seconds, attempt + 1)
                if attempt == self._max_retries:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _looks_bot_wide(self, chat_key: int | str, now: float) -> bool:
        """429s for several chats within a second mean the bot-wide limit, not one chat's."""
        self._recent_429 = [(t, c) for t, c in self._recent_429 if now - t < 1.0]
        self._recent_429.append((now, chat_key))
        return len({c for _, c in self._recent_429}) > 1


def _chat_key(chat_id: Any) -> int | str:
    try:
        return int(chat_id)
    except (TypeError, ValueError):
        return str(chat_id)
