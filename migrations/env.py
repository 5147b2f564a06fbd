"""Alembic environment: moim's models, run on a connection moim hands over (or from the CLI)."""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table)
from bot.db import render_item

target_metadata = SQLModel.metadata


def configure(connection: sa.Connection) -> None:
    """Run the migrations on one connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_from_cli() -> None:
    """`alembic -c migrations/alembic.ini ...`: the URL comes from MOIM_DATABASE_URL."""
    from sqlalchemy.ext.asyncio import create_async_engine

    url = os.environ.get("MOIM_DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set MOIM_DATABASE_URL to the database to migrate")

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(configure)
        await engine.dispose()

    asyncio.run(run())


connection = context.config.attributes.get("connection")
if connection is not None:
    configure(connection)
else:
    run_from_cli()
