"""moim's SQLite adapter (one trip per statement, BEGIN with the first one) behaves as SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.db import (
    UpdatePart,
    commit_with_next_row,
    driver_connection,
    make_engine,
    make_sessionmaker,
    transaction,
)
from bot.sqlite_driver import WITH_NEXT

TABLE = sa.Table(
    "note",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("body", sa.String, nullable=False),
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "driver.sqlite3"


@pytest.fixture
async def engine(path: Path):
    """moim's SQLite engine on a fresh file holding the one table."""
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    return make_sessionmaker(engine)


@pytest.fixture
def other(path: Path, engine):
    """Another process's view of the same file: plain sqlite3, no transaction of its own."""
    connection = sqlite3.connect(path, isolation_level=None)
    yield connection
    connection.close()


async def test_rows_counts_and_ids_come_back_as_from_sqlite(sessions):
    async with transaction(sessions) as session:
        inserted = await session.exec(sa.insert(TABLE).values(body="첫 메모"))
        await session.exec(sa.insert(TABLE), params=[{"body": f"메모 {n}"} for n in range(5)])
        changed = await session.exec(
            sa.update(TABLE).where(TABLE.c.body.like("메모 %")).values(body="고침")
        )
    assert inserted.inserted_primary_key == (1,)
    assert changed.rowcount == 5
    async with sessions() as session:
        rows = (await session.exec(sa.select(TABLE.c.body).order_by(TABLE.c.id))).all()
        partial = await session.exec(sa.select(TABLE.c.id).order_by(TABLE.c.id))
        first_two = partial.fetchmany(2)
    assert [r.body for r in rows] == ["첫 메모"] + ["고침"] * 5
    assert [r.id for r in first_two] == [1, 2]


async def test_a_failed_transaction_leaves_nothing_and_the_next_one_works(sessions):
    with pytest.raises(sa.exc.IntegrityError):
        async with transaction(sessions) as session:
            await session.exec(sa.insert(TABLE).values(id=1, body="남지 않을 메모"))
            await session.exec(sa.insert(TABLE).values(id=1, body="같은 번호"))
    async with transaction(sessions) as session:
        await session.exec(sa.insert(TABLE).values(id=1, body="남는 메모"))
    async with sessions() as session:
        bodies = (await session.exec(sa.select(TABLE.c.body))).scalars().all()
    assert bodies == ["남는 메모"]


async def test_a_writer_waits_for_another_process_lock_then_commits(sessions, other):
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO note (body) VALUES ('다른 프로세스')")

    async def write() -> None:
        async with transaction(sessions) as session:
            await session.exec(sa.insert(TABLE).values(body="기다린 메모"))

    writing = asyncio.create_task(write())
    await asyncio.sleep(0.3)
    assert not writing.done()  # BEGIN IMMEDIATE waits for the other writer
    other.execute("COMMIT")
    await asyncio.wait_for(writing, timeout=10)
    async with sessions() as session:
        bodies = (await session.exec(sa.select(TABLE.c.body).order_by(TABLE.c.id))).scalars().all()
    assert bodies == ["다른 프로세스", "기다린 메모"]


async def test_a_writer_that_never_gets_the_lock_is_told_and_the_next_one_begins(
    engine, sessions, other
):
    async with engine.connect() as connection:  # the one pooled connection: give up fast
        raw = await connection.get_raw_connection()
        await raw.driver_connection.execute("PRAGMA busy_timeout=50")
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sa.exc.OperationalError, match="locked"):
        async with transaction(sessions) as session:
            await session.exec(sa.insert(TABLE).values(body="못 쓴 메모"))
    other.execute("COMMIT")
    # The next transaction begins properly: its failure takes its first insert with it.
    with pytest.raises(sa.exc.IntegrityError):
        async with transaction(sessions) as session:
            await session.exec(sa.insert(TABLE).values(id=7, body="되돌릴 메모"))
            await session.exec(sa.insert(TABLE).values(id=7, body="같은 번호"))
    async with sessions() as session:
        count = (await session.exec(sa.select(sa.func.count()).select_from(TABLE))).scalar()
    assert count == 0


async def test_savepoints_keep_or_undo_their_part_as_in_sqlite(sessions):
    async with transaction(sessions) as session:
        await session.exec(sa.insert(TABLE).values(id=1, body="바깥 메모"))
        async with session.begin_nested():
            await session.exec(sa.insert(TABLE).values(id=2, body="지킨 메모"))
        with pytest.raises(sa.exc.IntegrityError):
            async with session.begin_nested():
                await session.exec(sa.insert(TABLE).values(id=3, body="되돌린 메모"))
                await session.exec(sa.insert(TABLE).values(id=1, body="같은 번호"))
        async with session.begin_nested():
            pass  # a savepoint with nothing in it, then the COMMIT right after
    async with sessions() as session:
        bodies = (await session.exec(sa.select(TABLE.c.body).order_by(TABLE.c.id))).scalars().all()
    assert bodies == ["바깥 메모", "지킨 메모"]


async def test_a_statement_carrying_the_commit_commits_only_when_it_returns_a_row(sessions, other):
    claim = (
        sa.insert(TABLE)
        .values(id=sa.bindparam("id"), body="기록")
        .prefix_with("OR IGNORE")
        .returning(TABLE.c.id)
    )
    async with sessions() as session:
        await session.exec(sa.insert(TABLE).values(id=1, body="먼저 쓴 메모"))
        async with commit_with_next_row(session):
            returned = (await session.exec(claim, params={"id": 2})).first()
        # Committed in that same trip: another connection sees both rows already.
        assert returned == (2,)
        assert other.execute("SELECT count(*) FROM note").fetchone() == (2,)
        with pytest.raises(sa.exc.ProgrammingError, match="after its transaction"):
            await session.exec(sa.insert(TABLE).values(id=9, body="너무 늦은 메모"))
    async with sessions() as session:
        await session.exec(sa.insert(TABLE).values(id=3, body="버릴 메모"))
        async with commit_with_next_row(session):
            returned = (await session.exec(claim, params={"id": 2})).first()
        assert returned is None  # already there: no row, so no COMMIT
        await session.rollback()
        await session.exec(sa.insert(TABLE).values(id=4, body="다음 거래의 메모"))
        await session.commit()
    assert other.execute("SELECT id FROM note ORDER BY id").fetchall() == [(1,), (2,), (4,)]


async def test_an_update_part_gets_its_savepoint_at_its_first_write_and_undoes_only_itself(
    sessions, other
):
    async with sessions() as session:
        connection = await driver_connection(session)
        await session.exec(sa.select(TABLE.c.id))  # the transaction has begun
        kept = UpdatePart(session, connection)
        await session.exec(sa.insert(TABLE).values(id=1, body="남을 메모"))
        await kept.release()
        reader = UpdatePart(session, connection)
        await session.exec(sa.select(TABLE.c.id))
        assert not connection.part_saved  # it only read: no savepoint was made for it
        await reader.release()
        refused = UpdatePart(session, connection)
        await session.exec(sa.insert(TABLE).values(id=2, body="되돌릴 메모"))
        await refused.rollback()
        await refused.release()
        await session.commit()
    assert other.execute("SELECT id, body FROM note").fetchall() == [(1, "남을 메모")]


async def test_a_write_marked_with_next_travels_with_the_next_statement_of_its_part(
    sessions, other
):
    later = sa.update(TABLE).prefix_with(WITH_NEXT).values(body="고친 메모")
    async with sessions() as session:
        await session.exec(sa.insert(TABLE).values(id=1, body="메모"))
        await session.exec(later)
        assert connection_waits(session.sync_session)  # no trip of its own
        await session.exec(sa.insert(TABLE).values(id=2, body="메모 2"))
        await session.commit()
    assert other.execute("SELECT body FROM note WHERE id = 1").fetchone() == ("고친 메모",)
    broken = sa.update(TABLE).prefix_with(WITH_NEXT).values(id=1)  # two rows, one id
    async with sessions() as session:
        connection = await driver_connection(session)
        await session.exec(sa.select(TABLE.c.id))
        part = UpdatePart(session, connection)
        await session.exec(broken)
        with pytest.raises(sqlite3.IntegrityError):  # sent at the part's end, in its name
            await part.release()


def connection_waits(session) -> bool:
    """True if a write waits in the session's SQLite connection for the next trip."""
    return session.connection().connection.dbapi_connection.writes_waiting()
