"""The audit log: who did what as an organiser or admin, and what was refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import AuditLog


async def record(
    session: AsyncSession,
    *,
    action: str,
    now: dt.datetime,
    actor_member_id: int | None = None,
    organization_id: int | None = None,
    target: str = "",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditLog:
    """Write one audit entry (no personal data beyond member ids)."""
    entry = AuditLog(
        at=now,
        actor_member_id=actor_member_id,
        organization_id=organization_id,
        action=action,
        target=target[:120],
        outcome=outcome,
        details=details or {},
    )
    session.add(entry)
    return entry


async def recent(
    session: AsyncSession, *, organization_id: int | None = None, limit: int = 50
) -> list[AuditLog]:
    """The latest entries, newest first."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if organization_id is not None:
        query = query.where(AuditLog.organization_id == organization_id)
    return list((await session.exec(query)).all())
