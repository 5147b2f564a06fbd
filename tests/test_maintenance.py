"""The hourly upkeep: what the database no longer needs is forgotten, and nothing else."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from bot.db import transaction
from bot.scheduler import JobRunner
from models import ConversationState, JobStatus, ProcessedUpdate, ScheduledJob


async def test_upkeep_forgets_old_update_ids_flows_and_finished_jobs_only(runtime, clock):
    now = clock.now()
    days = dt.timedelta(days=1)

    def job(key: str, status: JobStatus, due: dt.datetime, finished: dt.datetime | None = None):
        return ScheduledJob(
            kind="poll.close",
            key=key,
            due_at=due,
            status=status,
            created_at=due - days,
            finished_at=finished,
        )

    async with transaction(runtime.sessions) as session:
        session.add_all(
            [
                ProcessedUpdate(update_id=1, processed_at=now - 8 * days),
                ProcessedUpdate(update_id=2, processed_at=now - 1 * days),
                ConversationState(
                    chat_id=5, user_id=5, flow="new_poll", step="title", updated_at=now - 2 * days
                ),
                ConversationState(
                    chat_id=6, user_id=6, flow="new_poll", step="title", updated_at=now
                ),
                job("done-long-ago", JobStatus.DONE, now - 45 * days, now - 45 * days),
                # Due long ago but run late (after a long outage): finished recently, kept.
                job("done-late", JobStatus.DONE, now - 45 * days, now - 2 * days),
                job("done-lately", JobStatus.DONE, now - 3 * days, now - 3 * days),
                job("cancelled-long-ago", JobStatus.CANCELLED, now - 40 * days),
                job("cancelled-future", JobStatus.CANCELLED, now + 10 * days),
                job("dead-long-ago", JobStatus.DEAD, now - 60 * days, now - 60 * days),
                job("pending-later", JobStatus.PENDING, now + 40 * days),
            ]
        )

    await JobRunner(runtime).maintain()

    async with transaction(runtime.sessions) as session:
        update_ids = (await session.exec(select(ProcessedUpdate.update_id))).all()
        flows = (await session.exec(select(ConversationState.chat_id))).all()
        keys = set((await session.exec(select(ScheduledJob.key))).all())
    assert update_ids == [2]
    assert flows == [6]
    assert keys == {
        "done-late",
        "done-lately",
        "cancelled-future",
        "dead-long-ago",
        "pending-later",
    }
