"""Scheduled jobs as database rows: scheduled by key, claimed atomically, run once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import JobStatus, ScheduledJob

# Done and cancelled jobs are history after this; dead ones stay for the operator to look at.
KEEP_FINISHED_FOR = dt.timedelta(days=30)


async def schedule(
    session: AsyncSession,
    *,
    kind: str,
    key: str,
    due_at: dt.datetime,
    payload: dict[str, Any] | None = None,
    now: dt.datetime,
) -> ScheduledJob:
    """Schedule ``kind`` at ``due_at`` under a fixed ``key``; an existing job is replaced."""
    job = (await session.exec(select(ScheduledJob).where(ScheduledJob.key == key))).first()
    if job is None:
        job = ScheduledJob(kind=kind, key=key, created_at=now, due_at=due_at)
    job.kind = kind
    job.due_at = due_at
    job.payload = dict(payload or {})
    job.status = JobStatus.PENDING
    job.attempts = 0
    job.last_error = ""
    job.finished_at = None
    session.add(job)
    await session.flush()
    return job


async def cancel(session: AsyncSession, key: str) -> bool:
    """Cancel a pending job; False if there was none pending."""
    result = await session.exec(
        sa.update(ScheduledJob)
        .where(ScheduledJob.key == key, ScheduledJob.status == JobStatus.PENDING)
        .values(status=JobStatus.CANCELLED)
    )
    return bool(result.rowcount)


async def cancel_prefix(session: AsyncSession, prefix: str) -> int:
    """Cancel every pending job whose key starts with ``prefix`` (e.g. "meeting-42-")."""
    result = await session.exec(
        sa.update(ScheduledJob)
        .where(ScheduledJob.key.startswith(prefix), ScheduledJob.status == JobStatus.PENDING)
        .values(status=JobStatus.CANCELLED)
    )
    return result.rowcount or 0


async def claim_due(session: AsyncSession, *, now: dt.datetime) -> ScheduledJob | None:
    """Take the most overdue pending job with one atomic UPDATE; None if nothing is due.

    The row stays locked until the caller's transaction ends, so on PostgreSQL other
    instances skip it, and if the work fails or the process dies the claim is undone.
    """
    due = (
        select(ScheduledJob.id)
        .where(ScheduledJob.status == JobStatus.PENDING, ScheduledJob.due_at <= now)
        .order_by(ScheduledJob.due_at, ScheduledJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await session.exec(
        sa.update(ScheduledJob)
        .where(ScheduledJob.id == due, ScheduledJob.status == JobStatus.PENDING)
        .values(attempts=ScheduledJob.attempts + 1)
        .returning(ScheduledJob.id)
    )
    job_id = result.scalar_one_or_none()
    if job_id is None:
        return None
    return await session.get(ScheduledJob, job_id, populate_existing=True)


def complete(session: AsyncSession, job: ScheduledJob, *, now: dt.datetime) -> None:
    """Mark a claimed job done (in the same transaction as its effects)."""
    job.status = JobStatus.DONE
    job.finished_at = now
    session.add(job)


async def record_failure(
    session: AsyncSession,
    *,
    job_id: int,
    error: str,
    now: dt.datetime,
    max_attempts: int,
) -> ScheduledJob | None:
    """After a failed run: try again later with backoff, or set it aside as dead."""
    job = await session.get(ScheduledJob, job_id, with_for_update=True)
    if job is None or job.status != JobStatus.PENDING:
        return job
    job.attempts += 1  # the claim's increment was rolled back with the failed work
    job.last_error = error[:500]
    if job.attempts >= max_attempts:
        job.status = JobStatus.DEAD
        job.finished_at = now
    else:
        job.due_at = now + dt.timedelta(seconds=min(3600, 10 * 2 ** (job.attempts - 1)))
    session.add(job)
    return job


async def next_due_at(session: AsyncSession) -> dt.datetime | None:
    """When the next pending job is due."""
    return (
        await session.exec(
            select(sa.func.min(ScheduledJob.due_at)).where(
                ScheduledJob.status == JobStatus.PENDING
            )
        )
    ).one()


async def prune(session: AsyncSession, *, now: dt.datetime) -> int:
    """Forget jobs done or cancelled over 30 days ago; returns how many.

    Nothing reads them again: scheduling a key replaces its row whether or not one is there.
    """
    finished = sa.func.coalesce(ScheduledJob.finished_at, ScheduledJob.due_at)
    result = await session.exec(
        sa.delete(ScheduledJob).where(
            ScheduledJob.status.in_((JobStatus.DONE, JobStatus.CANCELLED)),
            finished < now - KEEP_FINISHED_FOR,
        )
    )
    return result.rowcount or 0


async def by_key(session: AsyncSession, key: str) -> ScheduledJob | None:
    """The job with this key."""
    return (await session.exec(select(ScheduledJob).where(ScheduledJob.key == key))).first()
