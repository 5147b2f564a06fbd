"""Where items (polls, campaigns, petitions, meetings) were posted as cards, to keep them live."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from models.base import big_id, when


class PostedCard(SQLModel, table=True):
    """One message showing an item's card in a chat; edited when the item changes."""

    __table_args__ = (
        sa.UniqueConstraint("chat_id", "message_id"),
        sa.Index("ix_postedcard_item", "kind", "item_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    item_id: int
    chat_id: int = big_id()
    message_id: int = Field(sa_type=sa.BigInteger())
    language: str = Field(default="ko", max_length=8)
    posted_by: int | None = Field(default=None, foreign_key="member.id", ondelete="SET NULL")
    posted_at: dt.datetime = when(nullable=False)
