"""Scheduled work: due ScheduledJob rows are claimed and run once, whatever the instance.

PTB's JobQueue (APScheduler) only wakes the process every ``scheduler.tick_seconds``; the
database says what is due. Each job runs in its own transaction together with its claim, so
its effects (usually outbox rows) and its completion commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.db import transaction
from bot.render import Rendered
from bot.services import conversations, jobs, outbox, privacy, updates
from models import ScheduledJob

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)
MAINTENANCE_EVERY = dt.timedelta(hours=1)


@dataclass
class JobContext:
    """What a job handler gets: the runtime, the job's session and time, and helpers."""

    runtime: Runtime
    session: AsyncSession
    now: dt.datetime
    changed_cards: list[tuple[str, int]] = field(default_factory=list)

    def render(self, template: str, language: str | None, **values: Any) -> Rendered:
        """Render a template in a language."""
        return self.runtime.renderer.render(template, language, **values)

    def card_changed(self, kind: str, item_id: int) -> None:
        """The item's posted cards should show its new state (after this job commits)."""
        self.changed_cards.append((kind, item_id))

    async def send(
        self,
        chat_id: int,
        rendered: Rendered,
        *,
        member_id: int | None = None,
        batch: str = "",
        dedupe_key: str | None = None,
        priority: int = 0,
    ) -> None:
        """Queue a message in the outbox (sent after this job's transaction commits)."""
        await outbox.enqueue(
            self.session,
            chat_id=chat_id,
            payload=outbox.message_payload(rendered.to_payload()),
            now=self.now,
            member_id=member_id,
            batch=batch,
            dedupe_key=dedupe_key,
            priority=priority,
        )


class JobRunner:
    """Runs due jobs; every instance runs one, and each job still runs once."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.ran = 0
        self._last_maintenance: dt.datetime | None = None

    async def tick(self, _context: object = None) -> None:
        """Called by the JobQueue: run what is due, then nudge the sender."""
        try:
            await self.run_due()
            await self.maintain()
        except Exception:
            log.exception("scheduler tick failed")
        self.runtime.wake_sender()

    async def run_due(self, limit: int = 1000) -> int:
        """Run due jobs one by one until none is due; returns how many ran."""
        count = 0
        while count < limit:
            outcome = await self.run_one()
            if outcome is None:
                break
            count += 1
        return count

    async def run_one(self) -> ScheduledJob | None:
        """Claim and run the most overdue job; None if nothing is due."""
        runtime = self.runtime
        now = runtime.now()
        claimed_id = None
        try:
            async with transaction(runtime.sessions) as session:
                job = await jobs.claim_due(session, now=now)
                if job is None:
                    return None
                claimed_id = job.id
                handler = runtime.features.jobs.get(job.kind)
                if handler is None:
                    raise LookupError(f"no handler for job kind {job.kind!r}")
                context = JobContext(runtime=runtime, session=session, now=now)
                await handler(context, job)
                jobs.complete(session, job, now=now)
        except Exception as error:
            if claimed_id is None:
                raise
            log.exception("job %s failed", claimed_id)
            async with transaction(runtime.sessions) as session:
                failed = await jobs.record_failure(
                    session,
                    job_id=claimed_id,
                    error=f"{type(error).__name__}: {error}",
                    now=now,
                    max_attempts=runtime.config.scheduler.max_attempts,
                )
            return failed
        self.ran += 1
        runtime.wake_sender()
        if runtime.cards is not None:
            for kind, item_id in context.changed_cards:
                runtime.cards.touch(kind, item_id)
        return job

    async def maintain(self) -> None:
        """Once an hour: forget old update ids, abandoned conversations, finished jobs and
        inactive people."""
        runtime = self.runtime
        now = runtime.now()
        if self._last_maintenance and now - self._last_maintenance < MAINTENANCE_EVERY:
            return
        self._last_maintenance = now
        async with transaction(runtime.sessions) as session:
            await updates.prune(session, now=now)
            await conversations.prune(session, now=now)
            await jobs.prune(session, now=now)
        async with transaction(runtime.sessions) as session:
            erased = await privacy.erase_inactive(
                session,
                retention=dt.timedelta(days=runtime.config.bot.retention_days),
                hooks=runtime.features.privacy,
                now=now,
            )
        if erased:
            log.info(
                "erased %d members inactive for %d days", erased, runtime.config.bot.retention_days
            )
