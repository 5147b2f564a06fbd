"""Schema: migrations build exactly what the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import models  # noqa: F401
from bot.app import build_runtime
from bot.db import current_revision, migrate, render_item, transaction
from models import Member


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


async def migrate_down(engine):
    from alembic import command

    from bot.db import alembic_config

    async with engine.begin() as connection:
        await connection.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
