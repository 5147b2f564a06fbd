"""Column types and helpers shared by every table."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

UTC = dt.UTC


class UTCDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime on every backend (SQLite keeps no zone; we store UTC there)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnum(enum.StrEnum):
    """An enum stored as its plain string value."""


def when(*, nullable: bool = True, index: bool = False, **kwargs: Any) -> Any:
    """A timestamp field stored as aware UTC."""
    default = kwargs.pop("default", None)
    return Field(default=default, sa_type=UTCDateTime(), nullable=nullable, index=index, **kwargs)


def enum_field(default: StrEnum, *, length: int = 16, index: bool = False) -> Any:
    """A StrEnum stored as a short string (portable across SQLite and PostgreSQL)."""
    return Field(default=default, sa_type=sa.String(length), nullable=False, index=index)


def big_id(
    *, unique: bool = False, index: bool = False, nullable: bool = False, primary_key: bool = False
) -> Any:
    """A Telegram id (64-bit)."""
    return Field(
        default=None if nullable else ...,
        sa_type=sa.BigInteger(),
        unique=unique or None,
        index=index or None,
        nullable=nullable,
        primary_key=primary_key,
    )


def json_field(**kwargs: Any) -> Any:
    """A JSON column (JSON on SQLite, JSONB-compatible JSON on PostgreSQL)."""
    return Field(default_factory=dict, sa_type=sa.JSON(), nullable=False, **kwargs)
