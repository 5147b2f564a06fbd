"""People: members, their consent, and the bot's administrators."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from models.base import big_id, when


class Member(SQLModel, table=True):
    """A person who consented to moim's privacy notice.

    After /forget the row stays as an anonymous tombstone (no Telegram id, no name) so that
    counts it took part in stay right.
    """

    id: int | None = Field(default=None, primary_key=True)
    telegram_user_id: int | None = big_id(unique=True, nullable=True)
    display_name: str = Field(default="", max_length=64)
    language: str = Field(default="ko", max_length=8)
    consent_version: int = Field(default=0)
    consented_at: dt.datetime | None = when()
    age_confirmed_at: dt.datetime | None = when()
    muted: bool = Field(default=False)
    unreachable_since: dt.datetime | None = when()
    # Updated at most daily; personal data is erased retention_days after it (PIPA).
    last_seen_at: dt.datetime | None = when(index=True)
    created_at: dt.datetime = when(nullable=False)
    deleted_at: dt.datetime | None = when()


class BotAdmin(SQLModel, table=True):
    """A bot administrator added with `moim admin add` (config admins are added on top)."""

    telegram_user_id: int = big_id(primary_key=True)
    added_at: dt.datetime = when(nullable=False)
