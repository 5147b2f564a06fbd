"""Organisations: creating, joining, roles and tiers, linked groups, networks of groups."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import case, func
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.services import audit, cards
from bot.services.errors import (
    InvalidInput,
    NotOrganizer,
    OrganizationNotFound,
    SensitiveConsentRequired,
    SlugTaken,
)
from models import (
    LinkedChat,
    Member,
    Membership,
    NetworkMember,
    Organization,
    OrgKind,
    Role,
    Tier,
)

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,30})[a-z0-9]$")
MAX_ORG_NAME = 100
ROLE_RANK = {Role.MEMBER: 0, Role.ORGANIZER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class MemberRow:
    """One line of an organisation's member list."""

    membership: Membership
    member: Member


def suggest_slug(name: str, taken_hint: int = 0) -> str:
    """A short Latin name for links, from the organisation's name where it has Latin letters."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:32].strip("-")
    if len(slug) < 3:
        slug = f"moim-{taken_hint or 1}"
    return slug


def validate_slug(slug: str) -> str:
    """The slug lower-cased, or InvalidInput explaining the rule."""
    slug = slug.strip().lower()
    if not SLUG_PATTERN.match(slug):
        raise InvalidInput(field="slug", reason="pattern")
    return slug


async def by_slug(session: AsyncSession, slug: str) -> Organization:
    """The organisation with this slug, or OrganizationNotFound."""
    org = (
        await session.exec(select(Organization).where(Organization.slug == slug.strip().lower()))
    ).first()
    if org is None:
        raise OrganizationNotFound(slug=slug)
    return org


async def by_id(session: AsyncSession, organization_id: int) -> Organization:
    """The organisation with this id, or OrganizationNotFound."""
    org = await session.get(Organization, organization_id)
    if org is None:
        raise OrganizationNotFound(slug=str(organization_id))
    return org


async def next_free_slug(session: AsyncSession, name: str) -> str:
    """A suggested slug that is not taken yet."""
    count = (await session.exec(select(func.count()).select_from(Organization))).one()
    base = suggest_slug(name, count + 1)
    slug, n = base, 1
    while (
        await session.exec(select(Organization.id).where(Organization.slug == slug))
    ).first() is not None:
        n += 1
        slug = f"{base[:28]}-{n}"
    return slug


async def create_organization(
    session: AsyncSession,
    *,
    creator: Member | None,
    name: str,
    slug: str,
    kind: OrgKind = OrgKind.GROUP,
    sensitive: bool = False,
    timezone: str = "Asia/Seoul",
    now: dt.datetime,
) -> Organization:
    """Create an organisation; its creator (if any) becomes its admin as a full member."""
    name = " ".join(name.split())
    if not name:
        raise InvalidInput(field="org_name", reason="empty")
    if len(name) > MAX_ORG_NAME:
        raise InvalidInput(field="org_name", reason="too_long", limit=MAX_ORG_NAME)
    slug = validate_slug(slug)
    if (await session.exec(select(Organization.id).where(Organization.slug == slug))).first():
        raise SlugTaken(slug=slug)
    org = Organization(
        name=name,
        slug=slug,
        kind=OrgKind(kind),
        sensitive=sensitive,
        timezone=timezone,
        created_at=now,
    )
    session.add(org)
    await session.flush()
    if creator is not None:
        session.add(
            Membership(
                member_id=creator.id,
                organization_id=org.id,
                role=Role.ADMIN,
                tier=Tier.FULL,
                joined_at=now,
                sensitive_consent_at=now if sensitive else None,
            )
        )
    await audit.record(
        session,
        action="org.create",
        now=now,
        actor_member_id=creator.id if creator else None,
        organization_id=org.id,
        target=slug,
        details={"kind": str(kind), "sensitive": sensitive},
    )
    await session.flush()
    return org


async def membership_of(
    session: AsyncSession, member: Member, org: Organization
) -> Membership | None:
    """The member's membership in the organisation, if any."""
    return (
        await session.exec(
            select(Membership).where(
                Membership.member_id == member.id, Membership.organization_id == org.id
            )
        )
    ).first()


async def join(
    session: AsyncSession,
    *,
    member: Member,
    org: Organization,
    sensitive_consent: bool = False,
    now: dt.datetime,
) -> tuple[Membership, bool]:
    """Join an organisation as a supporter; returns the membership and whether it is new."""
    existing = await membership_of(session, member, org)
    if existing is not None:
        return existing, False
    if org.sensitive and not sensitive_consent:
        raise SensitiveConsentRequired(org=org.name, slug=org.slug)
    membership = Membership(
        member_id=member.id,
        organization_id=org.id,
        role=Role.MEMBER,
        tier=Tier.SUPPORTER,
        joined_at=now,
        sensitive_consent_at=now if org.sensitive else None,
    )
    session.add(membership)
    await session.flush()
    return membership, True


async def leave(session: AsyncSession, *, member: Member, org: Organization) -> bool:
    """Leave an organisation (its last admin cannot)."""
    membership = await membership_of(session, member, org)
    if membership is None:
        return False
    if membership.role == Role.ADMIN and await _admin_count(session, org.id) <= 1:
        raise InvalidInput(field="role", reason="last_admin")
    await session.delete(membership)
    return True


async def _admin_count(session: AsyncSession, organization_id: int) -> int:
    return (
        await session.exec(
            select(func.count())
            .select_from(Membership)
            .where(Membership.organization_id == organization_id, Membership.role == Role.ADMIN)
        )
    ).one()


async def require_organizer(
    session: AsyncSession,
    *,
    member: Member | None,
    org: Organization,
    now: dt.datetime,
    action: str,
    is_bot_admin: bool = False,
    minimum: Role = Role.ORGANIZER,
) -> Membership | None:
    """The actor's membership if they may act as organiser here; else audit and NotOrganizer."""
    if is_bot_admin:
        return await membership_of(session, member, org) if member else None
    membership = await membership_of(session, member, org) if member else None
    if membership is None or ROLE_RANK[Role(membership.role)] < ROLE_RANK[minimum]:
        raise NotOrganizer(org=org.name, action=action)
    return membership


async def organizer_orgs(
    session: AsyncSession, member: Member, *, is_bot_admin: bool = False
) -> list[Organization]:
    """Organisations this member may act in as organiser (every one, for a bot admin)."""
    if is_bot_admin:
        return list((await session.exec(select(Organization).order_by(Organization.name))).all())
    result = await session.exec(
        select(Organization)
        .join(Membership, Membership.organization_id == Organization.id)
        .where(
            Membership.member_id == member.id,
            Membership.role.in_([Role.ORGANIZER, Role.ADMIN]),
        )
        .order_by(Organization.name)
    )
    return list(result.all())


async def list_members(
    session: AsyncSession, org: Organization, *, offset: int = 0, limit: int = 10
) -> tuple[list[MemberRow], int]:
    """A page of the organisation's members (organisers first, then by name) and the total."""
    total = (
        await session.exec(
            select(func.count())
            .select_from(Membership)
            .where(Membership.organization_id == org.id)
        )
    ).one()
    rank = case(
        (Membership.role == Role.ADMIN, 0), (Membership.role == Role.ORGANIZER, 1), else_=2
    )
    result = await session.exec(
        select(Membership, Member)
        .join(Member, Member.id == Membership.member_id)
        .where(Membership.organization_id == org.id)
        .order_by(rank, Member.display_name, Member.id)
        .offset(offset)
        .limit(limit)
    )
    return [MemberRow(membership=ms, member=m) for ms, m in result.all()], total


async def get_membership(
    session: AsyncSession, org: Organization, membership_id: int
) -> MemberRow | None:
    """One membership of this organisation with its member."""
    row = (
        await session.exec(
            select(Membership, Member)
            .join(Member, Member.id == Membership.member_id)
            .where(Membership.id == membership_id, Membership.organization_id == org.id)
        )
    ).first()
    return MemberRow(membership=row[0], member=row[1]) if row else None


async def change_membership(
    session: AsyncSession,
    *,
    actor: Member,
    org: Organization,
    membership_id: int,
    role: Role | None = None,
    tier: Tier | None = None,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> MemberRow:
    """An organiser changes someone's tier or role; only admins grant or take away admin."""
    actor_membership = await require_organizer(
        session,
        member=actor,
        org=org,
        now=now,
        action="members.change",
        is_bot_admin=is_bot_admin,
    )
    row = await get_membership(session, org, membership_id)
    if row is None:
        raise InvalidInput(field="member", reason="not_found")
    target = row.membership
    actor_is_admin = is_bot_admin or (
        actor_membership is not None and actor_membership.role == Role.ADMIN
    )
    if role is not None and role != target.role:
        touches_admin = Role.ADMIN in (role, Role(target.role))
        if touches_admin and not actor_is_admin:
            raise NotOrganizer(org=org.name, action="members.role.admin")
        if target.role == Role.ADMIN and await _admin_count(session, org.id) <= 1:
            raise InvalidInput(field="role", reason="last_admin")
        before = str(target.role)
        target.role = role
        await audit.record(
            session,
            action="members.role",
            now=now,
            actor_member_id=actor.id,
            organization_id=org.id,
            target=f"membership:{target.id}",
            details={"from": before, "to": str(role)},
        )
    if tier is not None and tier != target.tier:
        before = str(target.tier)
        target.tier = tier
        await audit.record(
            session,
            action="members.tier",
            now=now,
            actor_member_id=actor.id,
            organization_id=org.id,
            target=f"membership:{target.id}",
            details={"from": before, "to": str(tier)},
        )
    session.add(target)
    await session.flush()
    return row


async def link_chat(
    session: AsyncSession,
    *,
    actor: Member,
    org: Organization,
    chat_id: int,
    title: str,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> LinkedChat:
    """Attach a Telegram group to an organisation (moving it, if it was linked elsewhere, only
    for someone who organises both)."""
    await require_organizer(
        session, member=actor, org=org, now=now, action="link_group", is_bot_admin=is_bot_admin
    )
    linked = (await session.exec(select(LinkedChat).where(LinkedChat.chat_id == chat_id))).first()
    if linked is not None and linked.organization_id != org.id:
        # Taking a group away from its organisation needs the say of that organisation too,
        # or any organiser sitting in the group could carry it off to their own.
        await require_organizer(
            session,
            member=actor,
            org=await by_id(session, linked.organization_id),
            now=now,
            action="link_group",
            is_bot_admin=is_bot_admin,
        )
    if linked is None:
        linked = LinkedChat(chat_id=chat_id, organization_id=org.id, title=title, linked_at=now)
    else:
        linked.organization_id = org.id
        linked.title = title
        linked.linked_at = now
    session.add(linked)
    await audit.record(
        session,
        action="link_group",
        now=now,
        actor_member_id=actor.id,
        organization_id=org.id,
        target=f"chat:{chat_id}",
    )
    await session.flush()
    return linked


async def linked_chat(session: AsyncSession, chat_id: int) -> LinkedChat | None:
    """The link of a Telegram group, if it is attached to an organisation."""
    return (await session.exec(select(LinkedChat).where(LinkedChat.chat_id == chat_id))).first()


async def posting_chats(session: AsyncSession, org: Organization) -> list[LinkedChat]:
    """The group chats the organisation's cards may be posted in: its own first, then, for a
    network, its member groups' (they co-host its campaigns and co-sponsor its petitions)."""
    owners = [org.id]
    if org.kind == OrgKind.NETWORK:
        owners += [group.id for group in await network_groups(session, org)]
    chats = (
        await session.exec(
            select(LinkedChat)
            .where(LinkedChat.organization_id.in_(owners))
            .order_by(LinkedChat.id)
        )
    ).all()
    return sorted(chats, key=lambda chat: chat.organization_id != org.id)


async def posting_chat(
    session: AsyncSession, org: Organization, chat_id: int
) -> LinkedChat | None:
    """The linked group chat ``chat_id`` if the organisation's cards may be posted there."""
    return next((c for c in await posting_chats(session, org) if c.chat_id == chat_id), None)


async def migrate_chat(session: AsyncSession, *, old_chat_id: int, new_chat_id: int) -> bool:
    """A group became a supergroup: keep its link under the new chat id."""
    await cards.drop_chat(session, old_chat_id)
    linked = await linked_chat(session, old_chat_id)
    if linked is None:
        return False
    if await linked_chat(session, new_chat_id) is None:
        linked.chat_id = new_chat_id
        session.add(linked)
    else:
        await session.delete(linked)
    return True


async def add_to_network(
    session: AsyncSession,
    *,
    actor: Member | None,
    network: Organization,
    group: Organization,
    is_bot_admin: bool = False,
    now: dt.datetime,
) -> bool:
    """Make a group part of a network; False if it already was."""
    if actor is not None:
        await require_organizer(
            session,
            member=actor,
            org=network,
            now=now,
            action="network.add",
            is_bot_admin=is_bot_admin,
        )
    if network.kind != OrgKind.NETWORK:
        raise InvalidInput(field="network", reason="not_network")
    if group.kind != OrgKind.GROUP or group.id == network.id:
        raise InvalidInput(field="network", reason="not_group")
    exists = (
        await session.exec(
            select(NetworkMember).where(
                NetworkMember.network_id == network.id, NetworkMember.group_id == group.id
            )
        )
    ).first()
    if exists:
        return False
    session.add(NetworkMember(network_id=network.id, group_id=group.id, joined_at=now))
    await audit.record(
        session,
        action="network.add",
        now=now,
        actor_member_id=actor.id if actor else None,
        organization_id=network.id,
        target=f"org:{group.slug}",
    )
    return True


async def network_groups(session: AsyncSession, network: Organization) -> list[Organization]:
    """The groups of a network, by name."""
    result = await session.exec(
        select(Organization)
        .join(NetworkMember, NetworkMember.group_id == Organization.id)
        .where(NetworkMember.network_id == network.id)
        .order_by(Organization.name)
    )
    return list(result.all())
