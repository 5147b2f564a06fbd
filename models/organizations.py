"""Organisations, networks of organisations, memberships and linked Telegram groups."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, big_id, enum_field, when


class OrgKind(StrEnum):
    """An organisation is a group of people or a network (연대) of groups."""

    GROUP = "group"
    NETWORK = "network"


class Role(StrEnum):
    """What a member may do in an organisation."""

    MEMBER = "member"
    ORGANIZER = "organizer"
    ADMIN = "admin"


class Tier(StrEnum):
    """Membership tier; full members and supporters may have different vote weight."""

    SUPPORTER = "supporter"
    FULL = "full"


class Organization(SQLModel, table=True):
    """A group, cooperative, association or a network of them."""

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=100)
    kind: OrgKind = enum_field(OrgKind.GROUP)
    timezone: str = Field(default="Asia/Seoul", max_length=64)
    # Parties, unions, political networks: membership itself is sensitive (PIPA Art. 23).
    sensitive: bool = Field(default=False)
    created_at: dt.datetime = when(nullable=False)


class NetworkMember(SQLModel, table=True):
    """A group's place in a network of groups."""

    __table_args__ = (sa.UniqueConstraint("network_id", "group_id"),)

    id: int | None = Field(default=None, primary_key=True)
    network_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    joined_at: dt.datetime = when(nullable=False)


class Membership(SQLModel, table=True):
    """A member's place in an organisation: role and tier."""

    __table_args__ = (sa.UniqueConstraint("member_id", "organization_id"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True, ondelete="CASCADE")
    organization_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    role: Role = enum_field(Role.MEMBER)
    tier: Tier = enum_field(Tier.SUPPORTER)
    joined_at: dt.datetime = when(nullable=False)
    # Separate, explicit consent for an organisation whose membership is sensitive data.
    sensitive_consent_at: dt.datetime | None = when()


class LinkedChat(SQLModel, table=True):
    """A Telegram group attached to an organisation with /link_group."""

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = big_id(unique=True)
    organization_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    title: str = Field(default="", max_length=255)
    linked_at: dt.datetime = when(nullable=False)
