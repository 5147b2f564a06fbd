"""Which database a session talks to, for the few statements that differ between them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession


def dialect_name(session: AsyncSession) -> str:
    """ "postgresql" or "sqlite" (a session bound to nothing yet counts as SQLite, the default)."""
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def is_postgresql(session: AsyncSession) -> bool:
    """True when the session talks to PostgreSQL."""
    return dialect_name(session) == "postgresql"


def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT into ``table`` that knows ON CONFLICT, in the session's dialect."""
    return (postgresql if is_postgresql(session) else sqlite).insert(table)
