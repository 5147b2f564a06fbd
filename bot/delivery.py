"""The outbox sender: claims deliveries, sends them within limits, records what happened.

One round is a pipeline: a claimer keeps a small queue of claimed deliveries filled, workers
send them concurrently (each Bot API call waits for its slot in the rate limiter), and a
writer records the outcomes in groups every few hundred milliseconds. A crash therefore
repeats at most the messages sent since the last write; the claims of a dead instance run
out after ``delivery.claim_seconds`` (a live sender renews its own) and are sent again.

A send that gets no answer within a few seconds is parked: its request goes on in the
background (up to ``delivery.answer_timeout``) while the worker sends other messages, and its
late answer decides whether the message arrived. Only a send that never got an answer is
uncertain; ``delivery.resend_uncertain`` says whether it is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import deque
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
from bot.config import DeliveryConfig
from bot.db import transaction
from bot.http import NoAnswer, NotSent
from bot.render import Rendered
from bot.scheduler import JobContext
from bot.services import members, organizations, outbox
from bot.services.outbox import Claimed, Outcome
from models import DeliveryStatus

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Seconds a worker waits for Telegram's answer before parking the send and going on.
PATIENCE = 5.0
# Outcomes are written at least this often, and at once when this many are waiting.
FLUSH_SECONDS = 0.1
FLUSH_SIZE = 100
UNCERTAIN = "no answer (it may have arrived)"


def retry_delay(attempt: int) -> dt.timedelta:
    """Backoff after a failed attempt: 5 s, 10 s, 20 s, ... up to 10 minutes."""
    return dt.timedelta(seconds=min(600, 5 * 2 ** max(0, attempt - 1)))


def sender_concurrency(config: DeliveryConfig) -> int:
    """Sends in flight at once: as configured, else 8 (or 64 for paid broadcasts)."""
    return config.concurrency or (64 if config.paid_broadcast else 8)


def may_have_arrived(error: TelegramError) -> bool:
    """True when the request reached Telegram and no answer came back (so nobody knows)."""
    cause = error.__cause__
    if isinstance(cause, NotSent):
        return False
    if isinstance(cause, NoAnswer):
        return True
    if isinstance(error, TimedOut):
        return True
    # An answer came, with an error status: only a gateway timeout leaves it open.
    return "Gateway Timeout" in str(error)


class OutboxSender:
    """Sends what is in the outbox; any number of instances may run one each."""

    def __init__(self, runtime: Runtime, bot: ExtBot, *, concurrency: int | None = None) -> None:
        self.runtime = runtime
        self.bot = bot
        config = runtime.config.delivery
        self.concurrency = concurrency or sender_concurrency(config)
        self.claim_size = max(config.batch_size, 2 * self.concurrency)
        self.patience = PATIENCE
        self._wake = asyncio.Event()
        self._stopping = False
        self._rounds: set[_Round] = set()
        self.sent = 0

    def wake(self) -> None:
        """Something new is in the outbox."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the sends in flight, give back what was claimed but not sent, and stop."""
        self._stopping = True
        self._wake.set()
        for round_ in self._rounds:
            round_.nudge()

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stopping

    async def run_forever(self, idle_seconds: float = 1.0) -> None:
        """Send whatever becomes due, until stopped."""
        while not self._stopping:
            try:
                await _Round(self, until_idle=False, idle_seconds=idle_seconds).run()
            except Exception:
                log.exception("outbox sender failed; starting again shortly")
                await asyncio.sleep(1.0)

    async def drain(self, max_rounds: int = 1000) -> int:
        """Send until nothing is due now; returns how many deliveries were handled."""
        total = 0
        for _ in range(max_rounds):
            handled = await _Round(self, until_idle=True).run()
            if handled == 0:
                break
            total += handled
        return total

    async def run_once(self) -> int:
        """Claim one batch, send it, record the outcomes; returns the batch size."""
        return await _Round(self, until_idle=True, max_claims=1).run()

    async def wait_for_work(self, seconds: float) -> None:
        """Sleep until woken (something new in the outbox) or ``seconds`` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def send(self, delivery: Claimed) -> Outcome:
        """Make the Bot API call of one delivery and say what happened (never raises)."""
        try:
            return await self._send(delivery)
        except Exception as error:  # a bug or an unexpected answer: try again later
            log.exception("sending delivery %s failed unexpectedly", delivery.id)
            return self._retry(delivery, f"{type(error).__name__}: {error}")

    async def _send(self, delivery: Claimed) -> Outcome:
        config = self.runtime.config.delivery
        payload = delivery.payload
        method = payload.get("method", outbox.SEND_MESSAGE)
        rendered = Rendered.from_payload(payload) if "text" in payload else None
        options: dict = {"read_timeout": config.answer_timeout}
        if config.paid_broadcast and payload.get("paid"):
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
            seconds = telegram_io.retry_after_seconds(error)
            return self._retry(delivery, f"429 retry after {seconds:g}", seconds)
        except BadRequest as error:
            # Telegram will refuse the same request again: no retry.
            return Outcome(delivery.id, DeliveryStatus.FAILED, error=f"400 {error.message}")
        except (TimedOut, NetworkError) as error:
            if may_have_arrived(error):
                if not config.resend_uncertain:
                    return Outcome(delivery.id, DeliveryStatus.FAILED, error=UNCERTAIN)
                return self._retry(delivery, f"{UNCERTAIN}: {type(error).__name__}")
            return self._retry(delivery, f"{type(error).__name__}: {error}")
        except TelegramError as error:
            return self._retry(delivery, f"{type(error).__name__}: {error}")
        return Outcome(delivery.id, DeliveryStatus.SENT, telegram_message_id=message_id)

    def _retry(self, delivery: Claimed, error: str, at_least: float = 0.0) -> Outcome:
        if delivery.attempts >= self.runtime.config.delivery.max_attempts:
            return Outcome(delivery.id, DeliveryStatus.FAILED, error=error)
        delay = max(retry_delay(delivery.attempts), dt.timedelta(seconds=at_least))
        return Outcome(
            delivery.id, DeliveryStatus.PENDING, error=error, retry_at=self.runtime.now() + delay
        )


class _Round:
    """One pipelined run of the sender: claim ahead, send concurrently, write in groups."""

    def __init__(
        self,
        sender: OutboxSender,
        *,
        until_idle: bool,
        idle_seconds: float = 1.0,
        max_claims: int | None = None,
    ) -> None:
        self.sender = sender
        self.runtime = sender.runtime
        self.worker = sender.runtime.instance_id
        self.until_idle = until_idle
        self.idle_seconds = idle_seconds
        self.claims_left = max_claims
        self.queue: deque[Claimed] = deque()
        self.low_water = max(1, sender.claim_size // 2)
        self.outcomes: list[tuple[Claimed, Outcome]] = []
        self.parked: set[asyncio.Task] = set()
        self.parked_limit = sender.concurrency
        self.exhausted = False
        self.at_tail = False  # the last claim found less than it asked for
        self.maybe_done: set[str] = set()  # batches that may have no open deliveries left
        self.items = asyncio.Event()
        self.space = asyncio.Event()
        self.flush_now = asyncio.Event()
        self.closing = False
        self.handled = 0
        self.active = 0  # sends a worker is waiting on
        self.checked_batches = 0.0  # monotonic time of the last look at maybe_done

    def nudge(self) -> None:
        """Wake every waiting part (on stop)."""
        self.items.set()
        self.space.set()
        self.flush_now.set()

    @property
    def stopping(self) -> bool:
        return self.sender.stopping

    async def run(self) -> int:
        """Run until idle (or stopped); returns how many deliveries got an outcome."""
        sender = self.sender
        sender._rounds.add(self)
        claimer = asyncio.create_task(self._claim_loop())
        writer = asyncio.create_task(self._write_loop())
        workers = [asyncio.create_task(self._work()) for _ in range(sender.concurrency)]
        try:
            await asyncio.gather(*workers)
            if self.parked:
                # Their answers are still coming; when stopping, wait only a little.
                timeout = 5.0 if self.stopping else None
                await asyncio.wait(set(self.parked), timeout=timeout)
                for task in self.parked:
                    task.cancel()  # stopping: they stay claimed and are retried after the lease
        finally:
            for task in workers:
                task.cancel()
            claimer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claimer
            self.closing = True
            self.flush_now.set()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._release_unsent()
            sender._rounds.discard(self)
        return self.handled

    # --- claiming -------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        runtime, config = self.runtime, self.runtime.config.delivery
        while not self.stopping:
            if len(self.queue) >= self.low_water:
                self.space.clear()
                await self.space.wait()
                continue
            if self.claims_left == 0:
                break
            try:
                async with transaction(runtime.sessions) as session:
                    claimed = await outbox.claim_batch(
                        session,
                        worker=self.worker,
                        now=runtime.now(),
                        limit=self.sender.claim_size,
                        lease=dt.timedelta(seconds=config.claim_seconds),
                    )
            except Exception:
                log.exception("claiming deliveries failed; trying again shortly")
                await asyncio.sleep(1.0)
                continue
            if self.claims_left is not None:
                self.claims_left -= 1
            self.at_tail = len(claimed) < self.sender.claim_size
            if claimed:
                self.queue.extend(claimed)
                self.items.set()
                continue
            if self.until_idle:
                break
            self.flush_now.set()  # the tail: let the writer see which batches are done
            await self.sender.wait_for_work(self.idle_seconds)
        self.exhausted = True
        self.items.set()

    # --- sending ---------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            if self.stopping:
                return
            if self.queue:
                delivery = self.queue.popleft()
                if len(self.queue) < self.low_water:
                    self.space.set()
                await self._send(delivery)
                continue
            if self.exhausted:
                return
            self.items.clear()
            await self.items.wait()

    async def _send(self, delivery: Claimed) -> None:
        task = asyncio.ensure_future(self.sender.send(delivery))
        self.active += 1
        try:
            outcome = await asyncio.wait_for(asyncio.shield(task), self.sender.patience)
        except TimeoutError:
            if len(self.parked) < self.parked_limit:
                # Telegram is slow with this one: let its answer come while we go on.
                self.parked.add(task)
                task.add_done_callback(lambda done: self._answered(delivery, done))
                return
            outcome = await task
        finally:
            self.active -= 1
        self._finished(delivery, outcome)

    def _answered(self, delivery: Claimed, task: asyncio.Task) -> None:
        self.parked.discard(task)
        if task.cancelled():
            return  # left claimed: the lease runs out and it is tried again
        self._finished(delivery, task.result())

    def _finished(self, delivery: Claimed, outcome: Outcome) -> None:
        self.outcomes.append((delivery, outcome))
        # Write in groups while busy; at once when this was the last send in hand.
        if len(self.outcomes) >= FLUSH_SIZE or (not self.queue and not self.active):
            self.flush_now.set()

    # --- writing outcomes ------------------------------------------------------------------

    async def _write_loop(self) -> None:
        config = self.runtime.config.delivery
        renew_every = max(1.0, config.claim_seconds / 3)
        renewed = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush_now.wait(), FLUSH_SECONDS)
            self.flush_now.clear()
            closing = self.closing
            await self._write(closing)
            if time.monotonic() - renewed > renew_every:
                renewed = time.monotonic()
                await self._renew()
            if closing and not self.outcomes:
                return

    async def _write(self, closing: bool) -> None:
        """Record the outcomes gathered so far, and finish the batches that are done.

        Finished batches are looked for in the same transaction, so that what a batch's end
        brings (a broadcast's report) is in the outbox the moment its last outcome is.
        """
        written, self.outcomes = self.outcomes, []
        fresh = self._note_batches(written)
        look = bool(self.maybe_done) and (
            closing or (self.at_tail and (fresh or time.monotonic() - self.checked_batches > 1.0))
        )
        if not written and not look:
            return
        runtime = self.runtime
        candidates = set(self.maybe_done) if look else set()
        try:
            async with transaction(runtime.sessions) as session:
                now = runtime.now()
                if written:
                    await outbox.record_outcomes(
                        session, [o for _, o in written], worker=self.worker, now=now
                    )
                for delivery, outcome in written:
                    if outcome.status == DeliveryStatus.UNREACHABLE and delivery.chat_id > 0:
                        await members.mark_unreachable(session, delivery.chat_id, now=now)
                    if outcome.chat_id is not None:
                        await organizations.migrate_chat(
                            session, old_chat_id=delivery.chat_id, new_chat_id=outcome.chat_id
                        )
                finished = await self._finish_batches(session, candidates, now)
        except Exception:
            log.exception("writing %d outcomes failed; trying again shortly", len(written))
            self.outcomes = written + self.outcomes
            await asyncio.sleep(0.5)
            return
        if look:
            self.checked_batches = time.monotonic()
        self.maybe_done -= finished
        self.handled += len(written)
        self.sender.sent += sum(1 for _, o in written if o.status == DeliveryStatus.SENT)
        if finished:
            runtime.wake_sender()

    def _note_batches(self, written: list[tuple[Claimed, Outcome]]) -> bool:
        """Remember batches (with a batch_done hook) that may have just got their last outcome."""
        hooks = self.runtime.features.batch_done
        fresh = False
        for delivery, outcome in written:
            batch = delivery.batch
            if outcome.status != DeliveryStatus.PENDING and batch.split(":", 1)[0] in hooks:
                self.maybe_done.add(batch)
                fresh = True
        return fresh

    async def _finish_batches(self, session, candidates: set[str], now: dt.datetime) -> set[str]:
        """Run the batch_done hook of every candidate batch with no open deliveries left."""
        if not candidates:
            return set()
        hooks = self.runtime.features.batch_done
        done = candidates - await outbox.unfinished_batches(session, candidates)
        context = JobContext(runtime=self.runtime, session=session, now=now)
        finished = set()
        for batch in sorted(done):
            try:
                async with session.begin_nested():
                    await hooks[batch.split(":", 1)[0]](context, batch)
            except Exception:
                log.exception("finishing batch %s failed; trying again later", batch)
                continue
            finished.add(batch)
        return finished

    async def _renew(self) -> None:
        runtime = self.runtime
        try:
            async with transaction(runtime.sessions) as session:
                await outbox.renew_claims(
                    session,
                    worker=self.worker,
                    now=runtime.now(),
                    lease=dt.timedelta(seconds=runtime.config.delivery.claim_seconds),
                )
        except Exception:
            log.exception("renewing claims failed")

    async def _release_unsent(self) -> None:
        if not self.queue:
            return
        ids = [delivery.id for delivery in self.queue]
        self.queue.clear()
        try:
            async with transaction(self.runtime.sessions) as session:
                await outbox.release(session, ids, worker=self.worker)
        except Exception:
            log.exception("giving back %d claimed deliveries failed", len(ids))
