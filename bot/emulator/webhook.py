"""Webhook delivery: POST each queued update to the bot's URL(s), retrying until a 2xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING

import httpx

from bot.emulator.state import BotState, QueuedUpdate

if TYPE_CHECKING:
    from bot.emulator.emulator import Emulator


class WebhookDispatcher:
    """Delivers one bot's updates in update_id order, at most max_connections at a time."""

    def __init__(self, emulator: Emulator, bot: BotState):
        self.emulator = emulator
        self.bot = bot
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._next_target = 0

    def start(self) -> None:
        """Start delivering in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        """Look for deliverable updates now (new update, finished delivery, new target)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop delivering; updates in flight stay queued."""
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for update in self.bot.queue:
            update.in_flight = False

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = self._launch()
            if delay is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _launch(self) -> float | None:
        """Start deliveries that may go now; return seconds until the next retry is due."""
        webhook = self.bot.webhook
        if webhook is None:
            return None
        now = time.monotonic()
        next_retry: float | None = None
        started = False
        loop = asyncio.get_running_loop()
        for update in self.bot.queue:
            if len(self._in_flight) >= webhook.max_connections:
                break
            if update.delivered or update.in_flight:
                continue
            if update.retry_at > now:
                wait = update.retry_at - now
                next_retry = wait if next_retry is None else min(next_retry, wait)
                continue
            update.in_flight = True
            task = loop.create_task(self._deliver(update))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            started = True
        if started:
            self.emulator._notify()
        return next_retry

    def _targets(self) -> list[str]:
        webhook = self.bot.webhook
        if self.bot.webhook_targets:
            return self.bot.webhook_targets
        return [webhook.url] if webhook is not None else []

    async def _deliver(self, update: QueuedUpdate) -> None:
        emulator = self.emulator
        webhook = self.bot.webhook
        targets = self._targets()
        if webhook is None or not targets:
            update.in_flight = False
            self._in_flight.discard(asyncio.current_task())  # type: ignore[arg-type]
            return
        if update.target < 0:
            update.target = self._next_target
            self._next_target += 1
        # each retry goes to the next target, so one dead instance does not hold an update
        url = targets[(update.target + update.attempts) % len(targets)]
        headers = {"Content-Type": "application/json"}
        if webhook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook.secret_token
        status: int | None = None
        error: str | None = None
        try:
            response = await emulator._http_client().post(
                url,
                content=json.dumps(update.payload, ensure_ascii=False).encode(),
                headers=headers,
                timeout=emulator.webhook_timeout,
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"Wrong response from the webhook: {status} {response.reason_phrase}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ok = error is None
        self.bot.deliveries.append(
            {
                "update_id": update.update_id,
                "url": url,
                "status": status,
                "ok": ok,
                "error": error,
                "attempt": update.attempts + 1,
            }
        )
        update.in_flight = False
        if ok:
            update.delivered = True
            emulator.stats.webhook_deliveries += 1
            queue = self.bot.queue
            while queue and queue[0].delivered:
                queue.popleft()
        else:
            update.attempts += 1
            emulator.stats.webhook_failures += 1
            if webhook is self.bot.webhook:
                webhook.last_error_date = emulator.now()
                webhook.last_error_message = error
            if update.attempts % len(targets):
                update.retry_at = 0.0
            else:
                rounds = update.attempts // len(targets)
                backoff = emulator.webhook_retry_base * 2 ** (rounds - 1)
                update.retry_at = time.monotonic() + min(backoff, emulator.webhook_retry_max)
        # free the slot now: the done-callback runs only after the wake-up below is handled
        self._in_flight.discard(asyncio.current_task())  # type: ignore[arg-type]
        self.wake()
        emulator._notify()
