"""Processed update ids: a redelivered update (webhook retry, two instances) does nothing twice."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services.dialects import dialect_name
from models import ProcessedUpdate

KEEP_FOR = dt.timedelta(days=7)


async def processed_among(session: AsyncSession, update_ids: Collection[int]) -> set[int]:
    """Those of these update ids that were handled and committed before."""
    if not update_ids:
        return set()
    found = await session.exec(
        select(ProcessedUpdate.update_id).where(ProcessedUpdate.update_id.in_(update_ids))
    )
    return set(found.all())


async def mark_all_processed(
    session: AsyncSession, update_ids: Collection[int], *, now: dt.datetime
) -> set[int]:
    """Record several update ids in one statement; those that were not recorded before."""
    if not update_ids:
        return set()
    statement = _recording(dialect_name(session)).values(
        [{"update_id": update_id, "processed_at": now} for update_id in update_ids]
    )
    return set((await session.exec(statement)).scalars().all())


async def already_processed(session: AsyncSession, update_id: int) -> bool:
    """True if this update id was handled and committed before."""
    found = await session.exec(
        select(ProcessedUpdate.update_id).where(ProcessedUpdate.update_id == update_id)
    )
    return found.first() is not None


async def mark_processed(session: AsyncSession, update_id: int, *, now: dt.datetime) -> bool:
    """Record the update id with the update's effects; False if it was recorded before.

    One INSERT ... ON CONFLICT DO NOTHING instead of a look-up first: duplicates are rare, and
    on PostgreSQL a twin handled at the same moment waits here for the first one's outcome.
    """
    statement = _record_statement(dialect_name(session))
    result = await session.exec(statement, params={"update_id": update_id, "processed_at": now})
    return result.first() is not None


@functools.cache
def _record_statement(dialect: str):
    # Built once per dialect: it runs for every update.
    return _recording(dialect).values(
        update_id=sa.bindparam("update_id"), processed_at=sa.bindparam("processed_at")
    )


def _recording(dialect: str):
    """An INSERT of update ids that skips those already recorded and returns those it adds.

    On the table, not the model: an ORM insert goes through the ORM's bulk machinery, several
    times the cost of the statement."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = ProcessedUpdate.__table__
    return (
        insert(table)
        .on_conflict_do_nothing(index_elements=["update_id"])
        .returning(table.c.update_id)
    )


async def prune(session: AsyncSession, *, now: dt.datetime) -> int:
    """Forget update ids older than a week (Telegram never redelivers that late)."""
    result = await session.exec(
        delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < now - KEEP_FOR)
    )
    return result.rowcount or 0
