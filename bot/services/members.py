"""Members: registration with consent, profile, language, muting, reachability, admins."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services.errors import InvalidInput, NotAdmin, NotRegistered
from models import BotAdmin, Member, Membership, Organization

MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class MembershipView:
    """A membership with its organisation, for profiles and lists."""

    organization: Organization
    membership: Membership


@functools.cache
def _by_telegram_id_statement():
    # Built once: every update looks its sender up, and building the statement costs more
    # than running it from SQLAlchemy's compiled cache.
    return select(Member).where(
        Member.telegram_user_id == sa.bindparam("telegram_user_id"), Member.deleted_at.is_(None)
    )


async def by_telegram_id(session: AsyncSession, telegram_user_id: int) -> Member | None:
    """The registered (not deleted) member with this Telegram id, if any."""
    result = await session.exec(
        _by_telegram_id_statement(), params={"telegram_user_id": telegram_user_id}
    )
    return result.first()


async def by_telegram_ids(session: AsyncSession, telegram_user_ids: set[int]) -> dict[int, Member]:
    """The registered (not deleted) members with these Telegram ids, by Telegram id."""
    if not telegram_user_ids:
        return {}
    result = await session.exec(
        select(Member).where(
            Member.telegram_user_id.in_(sa.bindparam("ids", expanding=True)),
            Member.deleted_at.is_(None),
        ),
        params={"ids": list(telegram_user_ids)},
    )
    return {member.telegram_user_id: member for member in result.all()}


async def require_member(session: AsyncSession, telegram_user_id: int) -> Member:
    """The member with this Telegram id, or NotRegistered."""
    member = await by_telegram_id(session, telegram_user_id)
    if member is None or member.consent_version == 0:
        raise NotRegistered()
    return member


def clean_display_name(name: str) -> str:
    """A display name as stored: single spaces, no control characters, within the limit."""
    cleaned = " ".join("".join(ch for ch in name if ch.isprintable()).split())
    if not cleaned:
        raise InvalidInput(field="name", reason="empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(field="name", reason="too_long", limit=MAX_NAME_LENGTH)
    return cleaned


async def register(
    session: AsyncSession,
    *,
    telegram_user_id: int,
    display_name: str,
    language: str,
    notice_version: int,
    now: dt.datetime,
) -> Member:
    """Record consent to the privacy notice (and the age check); create the member if new."""
    member = await by_telegram_id(session, telegram_user_id)
    name = clean_display_name(display_name or "") if display_name.strip() else "-"
    if member is None:
        member = Member(
            telegram_user_id=telegram_user_id,
            display_name=name,
            language=language,
            created_at=now,
        )
        session.add(member)
    member.consent_version = notice_version
    member.consented_at = now
    member.age_confirmed_at = now
    member.unreachable_since = None
    member.last_seen_at = now
    await session.flush()
    return member


async def seen(session: AsyncSession, member: Member, *, now: dt.datetime) -> None:
    """Note that the member used moim (written at most once a day)."""
    if member.last_seen_at is None or now - member.last_seen_at > dt.timedelta(days=1):
        member.last_seen_at = now
        session.add(member)


def needs_consent(member: Member | None, notice_version: int) -> bool:
    """True when this person must (again) see and accept the privacy notice."""
    return member is None or member.consent_version < notice_version


async def set_language(session: AsyncSession, member: Member, language: str) -> Member:
    """Change the member's language."""
    if language not in ("ko", "en"):
        raise InvalidInput(field="language", reason="unsupported")
    member.language = language
    session.add(member)
    return member


async def rename(session: AsyncSession, member: Member, display_name: str) -> Member:
    """Change the member's display name."""
    member.display_name = clean_display_name(display_name)
    session.add(member)
    return member


async def set_muted(session: AsyncSession, member: Member, muted: bool) -> Member:
    """Mute or unmute announcements for this member."""
    member.muted = muted
    session.add(member)
    return member


async def mark_unreachable(
    session: AsyncSession, telegram_user_id: int, *, now: dt.datetime
) -> bool:
    """The person blocked the bot: remember it so nobody sends to them in vain."""
    member = await by_telegram_id(session, telegram_user_id)
    if member is None or member.unreachable_since is not None:
        return False
    member.unreachable_since = now
    session.add(member)
    return True


async def mark_reachable(session: AsyncSession, telegram_user_id: int) -> bool:
    """The person unblocked the bot or wrote to it: they can be reached again."""
    member = await by_telegram_id(session, telegram_user_id)
    if member is None or member.unreachable_since is None:
        return False
    member.unreachable_since = None
    session.add(member)
    return True


async def memberships(session: AsyncSession, member: Member) -> list[MembershipView]:
    """The member's organisations with role and tier, by name."""
    result = await session.exec(
        select(Membership, Organization)
        .join(Organization, Organization.id == Membership.organization_id)
        .where(Membership.member_id == member.id)
        .order_by(Organization.name)
    )
    return [MembershipView(organization=org, membership=ms) for ms, org in result.all()]


async def admin_ids(session: AsyncSession, configured: Iterable[int]) -> set[int]:
    """Telegram ids of every bot administrator (config plus `moim admin add`)."""
    stored = (await session.exec(select(BotAdmin.telegram_user_id))).all()
    return set(configured) | set(stored)


async def is_admin(
    session: AsyncSession, telegram_user_id: int, configured: Iterable[int]
) -> bool:
    """True if this Telegram user administers the bot."""
    if telegram_user_id in set(configured):
        return True
    return await session.get(BotAdmin, telegram_user_id) is not None


async def require_admin(
    session: AsyncSession, telegram_user_id: int, configured: Iterable[int]
) -> None:
    """Raise NotAdmin unless this Telegram user administers the bot."""
    if not await is_admin(session, telegram_user_id, configured):
        raise NotAdmin()


async def add_admin(session: AsyncSession, telegram_user_id: int, *, now: dt.datetime) -> bool:
    """Make a Telegram user a bot administrator; False if they already were."""
    if await session.get(BotAdmin, telegram_user_id) is not None:
        return False
    session.add(BotAdmin(telegram_user_id=telegram_user_id, added_at=now))
    return True
