"""Small named characters for tests: an organiser, citizens, an organisation."""

from __future__ import annotations

import datetime as dt

from bot.services import members, organizations
from models import Member, Organization, OrgKind, Role, Tier

MINJI = 1001  # the bot admin in tests (see conftest.ADMIN_TELEGRAM_ID)
SEOJUN = 2002
HAEUN = 3003
JIHO = 4004


async def make_member(
    session, telegram_user_id: int, name: str, *, language: str = "ko", now: dt.datetime
) -> Member:
    """A registered member who consented to the current notice."""
    return await members.register(
        session,
        telegram_user_id=telegram_user_id,
        display_name=name,
        language=language,
        notice_version=1,
        now=now,
    )


async def make_org(
    session,
    creator: Member | None,
    *,
    name: str = "새솔마을 주민회",
    slug: str = "saesol",
    kind: OrgKind = OrgKind.GROUP,
    sensitive: bool = False,
    now: dt.datetime,
) -> Organization:
    """An organisation, its creator as admin."""
    return await organizations.create_organization(
        session, creator=creator, name=name, slug=slug, kind=kind, sensitive=sensitive, now=now
    )


async def add_member(
    session,
    org: Organization,
    member: Member,
    *,
    tier: Tier = Tier.SUPPORTER,
    role: Role = Role.MEMBER,
    now: dt.datetime,
):
    """Join ``member`` to ``org`` with a tier and role."""
    membership, _ = await organizations.join(
        session, member=member, org=org, sensitive_consent=True, now=now
    )
    membership.tier = tier
    membership.role = role
    session.add(membership)
    await session.flush()
    return membership
