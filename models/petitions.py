"""Petitions and their signatures (one per person and petition)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import StrEnum, enum_field, when


class PetitionStatus(StrEnum):
    """A petition collects signatures until it is closed (at its closing time or by hand)."""

    OPEN = "open"
    CLOSED = "closed"


class Petition(SQLModel, table=True):
    """A demand addressed to someone, with a goal number of signatures."""

    id: int | None = Field(default=None, primary_key=True)
    organization_id: int = Field(foreign_key="organization.id", index=True, ondelete="CASCADE")
    title: str = Field(max_length=120)
    addressee: str = Field(max_length=120)
    body: str = Field(sa_type=sa.Text())
    goal: int
    closes_at: dt.datetime | None = when()
    # Signers may choose to have their name shown on the list handed over (else: none may).
    public_names: bool = Field(default=True)
    # Signers are told of milestones too (organisers always are).
    notify_signers: bool = Field(default=False)
    # Created by a network (연대): co-sponsored by the network's member groups.
    network: bool = Field(default=False)
    status: PetitionStatus = enum_field(PetitionStatus.OPEN)
    # Active signatures (anonymised ones included), kept by atomic UPDATEs with each change.
    signature_count: int = Field(default=0)
    # The highest milestone (25/50/75/100 % of the goal) announced; recorded with the crossing.
    milestone_reached: int = Field(default=0)
    created_by: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    created_at: dt.datetime = when(nullable=False)
    closed_at: dt.datetime | None = when()
    closed_reason: str = Field(default="", max_length=16)  # "time" or "hand"


class Signature(SQLModel, table=True):
    """One person's signature; withdrawing keeps the row, so signing again reuses it."""

    __table_args__ = (sa.UniqueConstraint("petition_id", "member_id"),)

    id: int | None = Field(default=None, primary_key=True)
    petition_id: int = Field(foreign_key="petition.id", ondelete="CASCADE")
    member_id: int = Field(foreign_key="member.id", index=True, ondelete="CASCADE")
    # The signer agreed to have their name shown publicly (asked once, after signing).
    public: bool = Field(default=False)
    comment: str | None = Field(default=None, max_length=300)
    # Which co-sponsoring organisation brought the signature (the petition's own for groups).
    sponsor_org_id: int | None = Field(
        default=None, foreign_key="organization.id", ondelete="SET NULL"
    )
    signed_at: dt.datetime = when(nullable=False)
    withdrawn_at: dt.datetime | None = when()
