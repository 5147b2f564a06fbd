"""Database engines, sessions and migrations (async SQLAlchemy; SQLite or PostgreSQL)."""

from __future__ import annotations

import ast
import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.sqlite_driver import OneTripConnection, one_trip_dbapi

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
T = TypeVar("T")


def is_sqlite(url: str) -> bool:
    """True for an SQLite URL."""
    return url.startswith("sqlite")


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, schema: str = ""
) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, foreign keys and serialised write transactions."""
    if is_sqlite(url):
        engine = create_async_engine(
            url,
            module=one_trip_dbapi(),
            echo=echo,
            # Parameters can hold names and message texts: keep them out of logs and errors.
            hide_parameters=True,
            connect_args={"timeout": 30},
            # SQLite has one writer at a time, and a waiting writer sleeps in SQLite's busy
            # handler with growing back-off. One connection makes transactions queue in
            # asyncio instead, and each starts the moment the previous one ends.
            pool_size=1,
            max_overflow=0,
            pool_timeout=120,
            # Every session ends its transaction itself; no extra ROLLBACK on each return.
            pool_reset_on_return=None,
        )
        _configure_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        # Named, so an operator (and the fault tests) can tell moim's connections apart.
        connect_args={"server_settings": {"application_name": f"moim:{schema or 'public'}"}},
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping before each use: with asyncpg it is three round trips (BEGIN, SELECT,
        # ROLLBACK), a tenth of a vote's CPU. A connection the server dropped fails on use
        # instead; SQLAlchemy then renews the whole pool, an update runs again (see
        # is_transient below), and a job or a send is retried on the next round.
        pool_recycle=1800,
    )
    if schema:

        @event.listens_for(engine.sync_engine, "connect")
        def _use_schema(dbapi_connection, _record) -> None:
            # Outside any transaction: a SET inside the driver's implicit one is undone when
            # the connection's first transaction rolls back (a health check does), and the
            # pooled connection would then look for the tables in public.
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            cursor.execute(f'SET search_path TO "{schema}"')
            cursor.close()
            dbapi_connection.autocommit = False

    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let us issue BEGIN ourselves (below) instead of pysqlite's deferred transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY when
        # another writer got in between; taking the write lock up front serialises cleanly.
        connection.connection.dbapi_connection.begin_immediate()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, autoflush=True)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block ends, roll back if it raises."""
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def is_transient(error: BaseException | None) -> bool:
    """A database failure that may pass: a dropped connection, a restarting server."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, DBAPIError) and (
            error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
        ):
            return True
        if isinstance(error, OSError | TimeoutError) or _connection_level(error):
            return True
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return False


def _connection_level(error: BaseException) -> bool:
    """asyncpg's errors for a connection that broke (they reach us wrapped, not flagged)."""
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(
        error,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.InternalClientError,
    )


async def read_retrying_once(
    sessions: async_sessionmaker[AsyncSession], read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """A short read in its own session, tried once more if the database dropped the pooled
    connection: with no ping before use, the first use after a restart fails, and SQLAlchemy
    renews the pool for the second try."""
    try:
        async with transaction(sessions) as session:
            return await read(session)
    except Exception as error:
        if not is_transient(error):
            raise
    async with transaction(sessions) as session:
        return await read(session)


async def driver_connection(session: AsyncSession) -> Any:
    """The DBAPI connection under the session's transaction (on SQLite, a OneTripConnection)."""
    connection = await (await session.connection()).get_raw_connection()
    return connection.dbapi_connection


@asynccontextmanager
async def commit_with_next_row(session: AsyncSession) -> AsyncIterator[None]:
    """On SQLite, the block's next statement commits the transaction in its own trip to the
    database's thread if it returns a row (``session.commit()`` then only tidies up).

    Everything pending is flushed first: nothing may be written after that COMMIT. On
    PostgreSQL this changes nothing.
    """
    await session.flush()
    adapted = await driver_connection(session)
    if not isinstance(adapted, OneTripConnection):
        yield
        return
    adapted.commit_if_row = True
    try:
        yield
    finally:
        adapted.commit_if_row = False


class UpdatePart:
    """An update's own part of a transaction it shares with others (SQLite only), undone
    alone: a savepoint the driver makes before the part's first write (OneTripConnection)."""

    def __init__(self, session: AsyncSession, connection: OneTripConnection) -> None:
        self._session = session
        self._connection = connection
        connection.begin_part()

    async def rollback(self) -> None:
        """Undo what the part wrote; the session forgets every object it holds, as after a
        rollback (what it loaded may show writes that are gone now)."""
        self._connection.undo_part()
        self._session.expunge_all()

    async def release(self) -> None:
        """Keep what the part wrote; its pending changes are written first (a broken
        constraint raises here, and the session then needs a rollback)."""
        await self._session.flush()
        if self._connection.writes_waiting():  # its failure must still be this part's
            await self._connection.send_waiting()
        self._connection.end_part()


def render_item(type_, obj, autogen_context):
    """Alembic hook: write our column types as plain SQLAlchemy ones in generated migrations."""
    from models.base import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and obj.__class__.__module__.startswith("sqlmodel"):
        length = getattr(obj, "length", None)
        return f"sa.String(length={length})" if length else "sa.String()"
    return False


def alembic_config(connection: sa.Connection | None = None):
    """Alembic's configuration pointing at moim's migrations (optionally sharing a connection)."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest revision(s) of moim's migrations, read from their files without Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.AnnAssign | ast.Assign) or node.value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {target.id for target in targets if isinstance(target, ast.Name)}
            if "revision" in names:
                revisions.add(ast.literal_eval(node.value))
            elif "down_revision" in names:
                value = ast.literal_eval(node.value)
                parents.update([value] if isinstance(value, str) else value or ())
    return frozenset(revisions - parents)


async def _at_head(engine: AsyncEngine) -> bool:
    """Whether the database is already at the newest revision (one cheap query)."""

    def read(connection: sa.Connection) -> set[str]:
        if not sa.inspect(connection).has_table("alembic_version"):
            return set()
        return set(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())

    async with engine.connect() as connection:
        return await connection.run_sync(read) == head_revisions()


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` with Alembic."""
    # Every start migrates; when there is nothing to do, Alembic is not even imported (it
    # would cost each start ~0.1–0.2 s and each process ~7 MB for as long as it runs).
    if revision == "head" and await _at_head(engine):
        return
    from alembic import command

    def upgrade(connection: sa.Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    def read(connection: sa.Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def run_blocking(coroutine):
    """Run a coroutine to completion from synchronous code (the CLI)."""
    return asyncio.run(coroutine)
