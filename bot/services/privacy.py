"""A member's own data: export it (/mydata) and erase it (/forget), across every feature.

Each feature contributes a ``PrivacyHook``: what of a member's data it holds (for the export)
and how to erase the personal parts while keeping anonymous counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import delete
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import conversations, members, outbox
from models import Member, Membership

Exporter = Callable[[AsyncSession, Member], Awaitable[Any]]
Eraser = Callable[[AsyncSession, Member, dt.datetime], Awaitable[None]]


@dataclass(frozen=True)
class PrivacyHook:
    """One feature's part of a member's data."""

    name: str
    export: Exporter
    erase: Eraser


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def export_member_data(
    session: AsyncSession, member: Member, *, hooks: Sequence[PrivacyHook], now: dt.datetime
) -> dict[str, Any]:
    """Everything moim holds about a member, as a JSON-able document."""
    views = await members.memberships(session, member)
    document: dict[str, Any] = {
        "exported_at": now.isoformat(),
        "profile": {
            "telegram_user_id": member.telegram_user_id,
            "display_name": member.display_name,
            "language": member.language,
            "consent_version": member.consent_version,
            "consented_at": _iso(member.consented_at),
            "age_confirmed_at": _iso(member.age_confirmed_at),
            "muted": member.muted,
            "unreachable_since": _iso(member.unreachable_since),
            "registered_at": _iso(member.created_at),
        },
        "memberships": [
            {
                "organization": view.organization.name,
                "slug": view.organization.slug,
                "role": str(view.membership.role),
                "tier": str(view.membership.tier),
                "joined_at": _iso(view.membership.joined_at),
                "sensitive_consent_at": _iso(view.membership.sensitive_consent_at),
            }
            for view in views
        ],
    }
    for hook in hooks:
        document[hook.name] = await hook.export(session, member)
    return document


async def erase_inactive(
    session: AsyncSession,
    *,
    retention: dt.timedelta,
    hooks: Sequence[PrivacyHook],
    now: dt.datetime,
    limit: int = 500,
) -> int:
    """Erase members who have not used moim within the retention period (the notice says so)."""
    cutoff = now - retention
    stale = await session.exec(
        select(Member)
        .where(
            Member.deleted_at.is_(None),
            Member.telegram_user_id.is_not(None),
            sa.func.coalesce(Member.last_seen_at, Member.created_at) < cutoff,
        )
        .limit(limit)
    )
    count = 0
    for member in stale.all():
        await forget_member(session, member, hooks=hooks, now=now)
        count += 1
    return count


async def forget_member(
    session: AsyncSession, member: Member, *, hooks: Sequence[PrivacyHook], now: dt.datetime
) -> None:
    """Erase a member's personal data; what they took part in stays, anonymously, in counts."""
    for hook in hooks:
        await hook.erase(session, member, now)
    telegram_user_id = member.telegram_user_id
    await session.exec(delete(Membership).where(Membership.member_id == member.id))
    await outbox.cancel_for_member(session, member.id)
    await outbox.erase_for_member(session, member.id)
    if telegram_user_id is not None:
        await conversations.forget_user(session, telegram_user_id)
    member.telegram_user_id = None
    member.display_name = ""
    member.consent_version = 0
    member.consented_at = None
    member.age_confirmed_at = None
    member.unreachable_since = None
    member.muted = False
    member.deleted_at = now
    session.add(member)
    await session.flush()
