"""Fixtures for the emulator's own tests: an emulator, its server on a free port, a PTB Bot."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Bot
from telegram.ext import Application, ApplicationBuilder

from bot.emulator import Emulator, EmulatorServer, Limits
from bot.emulator.spec import load_spec

TOKEN = "123456:TEST-token"
BOT_USERNAME = "moim_test_bot"


@pytest.fixture
def emulator() -> Emulator:
    """An emulator with one bot and Telegram's default limits."""
    emu = Emulator(limits=Limits())
    emu.create_bot(TOKEN, BOT_USERNAME, "Moim")
    return emu


@pytest.fixture
async def server(emulator: Emulator) -> AsyncIterator[EmulatorServer]:
    """The emulator served on 127.0.0.1 at a free port."""
    srv = EmulatorServer(emulator, port=0)
    await srv.start()
    yield srv
    await srv.stop()
    await emulator.close()


@pytest.fixture
async def bot(server: EmulatorServer) -> AsyncIterator[Bot]:
    """A real PTB Bot talking to the emulator over HTTP."""
    async with Bot(TOKEN, base_url=server.base_url, base_file_url=server.base_file_url) as tg:
        yield tg


@pytest.fixture
def citizen(emulator: Emulator) -> dict[str, Any]:
    """A person who has written to the bot, so the bot may write to them."""
    user = emulator.create_user("지민", "김", "jimin")
    emulator.send_text(TOKEN, user["id"], "/start")
    return user


def build_app(server: EmulatorServer, **builder: Any) -> Application:
    """A PTB Application pointed at the emulator."""
    app_builder = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(server.base_url)
        .base_file_url(server.base_file_url)
    )
    for name, value in builder.items():
        app_builder = getattr(app_builder, name)(value)
    return app_builder.build()


@contextlib.asynccontextmanager
async def polling(app: Application) -> AsyncIterator[Application]:
    """Run an Application by long polling for the duration of the block."""
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=2)
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


def assert_shape(type_name: str, value: Any) -> None:
    """Check a result against the Bot API spec type (required fields, no unknown fields)."""
    load_spec().check((type_name,), value)
