"""Shared fixtures: a real database (SQLite always, PostgreSQL when MOIM_TEST_DATABASE_URL is set),
a fake clock, a migrated runtime, and small named characters."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import build_runtime
from bot.clock import UTC, FakeClock
from bot.config import Config
from bot.db import migrate, transaction
from bot.emulator.limits import Limits
from bot.runtime import Runtime

POSTGRES_URL = os.environ.get("MOIM_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """Each database test runs on SQLite, and on PostgreSQL when one is configured."""
    return request.param


@pytest.fixture
async def database(backend: str, tmp_path: Path) -> AsyncIterator[dict]:
    """Database options for a fresh, empty database (an SQLite file or a PostgreSQL schema)."""
    if backend == "sqlite":
        yield {"url": f"sqlite+aiosqlite:///{tmp_path / 'moim.sqlite3'}", "schema": ""}
        return
    schema = "t_" + secrets.token_hex(6)
    yield {"url": POSTGRES_URL, "schema": schema}
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as connection:
        await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when a test moves it: Tuesday 1 December 2026, 09:00 in Seoul."""
    return FakeClock(dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC))


ADMIN_TELEGRAM_ID = 1001


@pytest.fixture
def config(database: dict, tmp_path: Path) -> Config:
    """Configuration for tests: the test database, one bot admin, no real Telegram."""
    return Config().replace(
        database=database,
        bot={
            "admins": [ADMIN_TELEGRAM_ID],
            "operator_name": "새솔마을 주민회",
            "operator_contact": "privacy@example.org",
        },
        base_dir=tmp_path,
    )


@pytest.fixture
async def runtime(config: Config, clock: FakeClock) -> AsyncIterator[Runtime]:
    """A migrated runtime (database, renderer, clock) without Telegram, for service tests."""
    runtime = build_runtime(config, clock)
    await migrate(runtime.engine)
    yield runtime
    await runtime.engine.dispose()


@pytest.fixture
async def session(runtime: Runtime):
    """One committed-at-the-end session over the test database."""
    async with transaction(runtime.sessions) as session:
        yield session


def fast_chat_limits() -> tuple[dict, Limits]:
    """Per-chat limits scaled up on both sides (still enforced), so tests do not wait a second
    per message; the bot-wide limit stays Telegram's. test_rate_limits uses the real ones."""
    delivery = {"private_chat_per_second": 40.0, "group_per_minute": 2400.0}
    limits = Limits(private_rate=50.0, private_burst=50.0, group_rate=50.0, group_burst=50.0)
    return delivery, limits


@pytest.fixture
async def local(config: Config, clock: FakeClock):
    """The real bot against the emulator over HTTP; scheduled work runs when a test says so."""
    from bot.local import LocalOptions, LocalTelegram

    delivery, limits = fast_chat_limits()
    async with LocalTelegram(
        config.replace(delivery=delivery),
        LocalOptions(clock=clock, run_scheduler=False, poll_timeout=1, limits=limits),
    ) as running:
        yield running


@pytest.fixture
async def quiet_local(config, clock):
    """The bot without its own sender running: the test says which sender sends, and when."""
    from bot.local import LocalOptions, LocalTelegram

    delivery, limits = fast_chat_limits()
    async with LocalTelegram(
        config.replace(delivery=delivery),
        LocalOptions(
            clock=clock, run_scheduler=False, run_sender=False, poll_timeout=1, limits=limits
        ),
    ) as running:
        yield running
