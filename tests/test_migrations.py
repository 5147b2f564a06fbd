"""Schema: migrations build exactly what the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel, select

from bot.app import build_runtime
from bot.db import (
    alembic_config,
    current_revision,
    head_revisions,
    migrate,
    render_item,
    transaction,
)
from models import Member
from tests.factories import SEOJUN, make_member


async def test_models_and_migrations_agree(config, clock):
    runtime = build_runtime(config, clock)
    try:
        await migrate(runtime.engine)

        def diff(connection):
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_item": render_item}
            )
            return compare_metadata(context, SQLModel.metadata)

        async with runtime.engine.connect() as connection:
            differences = await connection.run_sync(diff)
        assert differences == []
    finally:
        await runtime.engine.dispose()


async def test_migrate_is_idempotent_and_downgrades(config, clock):
    runtime = build_runtime(config, clock)
    try:
        await migrate(runtime.engine)
        head = await current_revision(runtime.engine)
        await migrate(runtime.engine)
        assert await current_revision(runtime.engine) == head
        await migrate_down(runtime.engine)
        assert await current_revision(runtime.engine) is None
        await migrate(runtime.engine)
        assert await current_revision(runtime.engine) == head
    finally:
        await runtime.engine.dispose()


async def test_a_connection_first_used_by_a_health_check_still_finds_the_tables(config, clock):
    # One pooled connection; its first transaction ends in a rollback, as /healthz's does.
    runtime = build_runtime(config.replace(database={"pool_size": 1}), clock)
    try:
        await migrate(runtime.engine)
        await runtime.engine.dispose()
        async with runtime.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
        async with transaction(runtime.sessions) as session:
            assert (await session.exec(sa.select(sa.func.count(Member.id)))).scalar_one() == 0
    finally:
        await runtime.engine.dispose()


def test_the_head_read_from_the_migration_files_is_alembics():
    from alembic.script import ScriptDirectory

    assert head_revisions() == set(ScriptDirectory.from_config(alembic_config()).get_heads())


async def test_a_restart_on_a_current_schema_does_not_run_alembic(config, clock, monkeypatch):
    from alembic import command

    runtime = build_runtime(config, clock)
    try:
        await migrate(runtime.engine)

        def refuse(*_args, **_kwargs):
            raise AssertionError("Alembic ran although the schema was current")

        monkeypatch.setattr(command, "upgrade", refuse)
        await migrate(runtime.engine)
    finally:
        await runtime.engine.dispose()


async def test_a_connection_whose_first_work_fails_stays_in_moims_schema(config, clock):
    # On PostgreSQL with database.schema set, the schema is chosen when a connection opens;
    # a failed (rolled back) first unit of work must not send the connection elsewhere.
    runtime = build_runtime(config, clock)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            await make_member(session, SEOJUN, "서준", now=clock.now())
        await runtime.engine.dispose()  # new connections from here on
        with pytest.raises(RuntimeError):
            async with transaction(runtime.sessions) as session:
                await session.exec(select(Member))
                raise RuntimeError("a unit of work that fails")
        async with transaction(runtime.sessions) as session:
            names = (await session.exec(select(Member.display_name))).all()
        assert names == ["서준"]
    finally:
        await runtime.engine.dispose()


async def migrate_down(engine):
    from alembic import command

    from bot.db import alembic_config

    async with engine.begin() as connection:
        await connection.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
