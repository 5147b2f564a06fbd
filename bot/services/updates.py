"""Processed update ids: a redelivered update (webhook retry, two instances) does nothing twice."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ProcessedUpdate

KEEP_FOR = dt.timedelta(days=7)


async def already_processed(session: AsyncSession, update_id: int) -> bool:
    """True if this update id was handled and committed before."""
    found = await session.exec(
        select(ProcessedUpdate.update_id).where(ProcessedUpdate.update_id == update_id)
    )
    return found.first() is not None


def mark_processed(session: AsyncSession, update_id: int, *, now: dt.datetime) -> None:
    """Record the update id in the same transaction as its effects."""
    session.add(ProcessedUpdate(update_id=update_id, processed_at=now))


async def prune(session: AsyncSession, *, now: dt.datetime) -> int:
    """Forget update ids older than a week (Telegram never redelivers that late)."""
    result = await session.exec(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < now - KEEP_FOR)
    )
    return result.rowcount or 0
