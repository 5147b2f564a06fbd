"""The outbox sender: claims batches of deliveries, sends them within limits, records results."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import ExtBot

from bot import telegram_io
from bot.db import transaction
from bot.render import Rendered
from bot.services import members, organizations, outbox
from bot.services.outbox import Outcome
from models import Delivery, DeliveryStatus

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


def retry_delay(attempt: int) -> dt.timedelta:
    """Backoff after a failed attempt: 5 s, 10 s, 20 s, ... up to 10 minutes."""
    return dt.timedelta(seconds=min(600, 5 * 2 ** max(0, attempt - 1)))


class OutboxSender:
    """Sends what is in the outbox; any number of instances may run one each."""

    def __init__(self, runtime: Runtime, bot: ExtBot, *, concurrency: int | None = None) -> None:
        self.runtime = runtime
        self.bot = bot
        config = runtime.config.delivery
        self.concurrency = concurrency or (64 if config.paid_broadcast else 8)
        self._wake = asyncio.Event()
        self._stopping = False
        self.sent = 0

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand and stop."""
        self._stopping = True
        self._wake.set()

    async def run_forever(self, idle_seconds: float = 1.0) -> None:
        """Send batch after batch; when idle, wait to be woken (or look again every second)."""
        while not self._stopping:
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox batch failed; retrying shortly")
                handled = 0
            if handled == 0 and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=idle_seconds)

    async def drain(self, max_batches: int = 100_000) -> int:
        """Send until nothing is due now; returns how many deliveries were handled."""
        total = 0
        for _ in range(max_batches):
            handled = await self.run_once()
            if handled == 0:
                break
            total += handled
        return total

    async def run_once(self) -> int:
        """Claim one batch, send it, record the outcomes; returns the batch size."""
        runtime = self.runtime
        config = runtime.config.delivery
        async with transaction(runtime.sessions) as session:
            batch = await outbox.claim_batch(
                session,
                worker=runtime.instance_id,
                now=runtime.now(),
                limit=max(config.batch_size, self.concurrency),
                lease=dt.timedelta(seconds=config.claim_seconds),
            )
        if not batch:
            return 0
        gate = asyncio.Semaphore(self.concurrency)

        async def send_one(delivery: Delivery) -> Outcome:
            async with gate:
                return await self._send(delivery)

        outcomes = await asyncio.gather(*(send_one(d) for d in batch))
        async with transaction(runtime.sessions) as session:
            await outbox.record_outcomes(
                session, list(outcomes), worker=runtime.instance_id, now=runtime.now()
            )
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if outcome.status == DeliveryStatus.UNREACHABLE and delivery.chat_id > 0:
                    await members.mark_unreachable(session, delivery.chat_id, now=runtime.now())
                if outcome.chat_id is not None:
                    await organizations.migrate_chat(
                        session, old_chat_id=delivery.chat_id, new_chat_id=outcome.chat_id
                    )
        self.sent += sum(1 for o in outcomes if o.status == DeliveryStatus.SENT)
        return len(batch)

    async def _send(self, delivery: Delivery) -> Outcome:
        """Make the Bot API call of one delivery and say what happened."""
        config = self.runtime.config.delivery
        payload = delivery.payload
        method = payload.get("method", outbox.SEND_MESSAGE)
        rendered = Rendered.from_payload(payload) if "text" in payload else None
        options = {}
        if config.paid_broadcast and method != outbox.EDIT_MESSAGE:
            options["allow_paid_broadcast"] = True
        try:
            if method == outbox.SEND_MESSAGE:
                messages = await telegram_io.send(self.bot, delivery.chat_id, rendered, **options)
                message_id = messages[-1].message_id
            elif method == outbox.EDIT_MESSAGE:
                await telegram_io.edit(self.bot, delivery.chat_id, payload["message_id"], rendered)
                message_id = payload["message_id"]
            elif method == outbox.SEND_DOCUMENT:
                message = await telegram_io.send_document(
                    self.bot,
                    delivery.chat_id,
                    filename=payload.get("filename", "file"),
                    data=payload["file_id"],
                    caption=rendered,
                    **options,
                )
                message_id = message.message_id
            elif method == outbox.SEND_PHOTO:
                message = await telegram_io.send_photo(
                    self.bot,
                    delivery.chat_id,
                    data=payload["file_id"],
                    caption=rendered,
                    **options,
                )
                message_id = message.message_id
            else:
                return Outcome(delivery.id, DeliveryStatus.FAILED, error=f"unknown {method}")
        except Forbidden as error:
            return Outcome(delivery.id, DeliveryStatus.UNREACHABLE, error=str(error))
        except ChatMigrated as error:
            return Outcome(
                delivery.id,
                DeliveryStatus.PENDING,
                error="chat migrated",
                retry_at=self.runtime.now(),
                chat_id=error.new_chat_id,
            )
        except RetryAfter as error:
            seconds = error.retry_after
            seconds = seconds.total_seconds() if hasattr(seconds, "total_seconds") else seconds
            return self._retry(delivery, f"429 retry after {seconds}", float(seconds))
        except BadRequest as error:
            # Telegram will refuse the same request again: no retry.
            return Outcome(delivery.id, DeliveryStatus.FAILED, error=f"400 {error.message}")
        except (TimedOut, NetworkError, TelegramError) as error:
            return self._retry(delivery, f"{type(error).__name__}: {error}")
        return Outcome(delivery.id, DeliveryStatus.SENT, telegram_message_id=message_id)

    def _retry(self, delivery: Delivery, error: str, at_least: float = 0.0) -> Outcome:
        if delivery.attempts >= self.runtime.config.delivery.max_attempts:
            return Outcome(delivery.id, DeliveryStatus.FAILED, error=error)
        delay = max(retry_delay(delivery.attempts), dt.timedelta(seconds=at_least))
        return Outcome(
            delivery.id, DeliveryStatus.PENDING, error=error, retry_at=self.runtime.now() + delay
        )
