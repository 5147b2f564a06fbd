"""Bot API requests over aiohttp: results, uploads, and failures PTB can tell apart."""

from __future__ import annotations

import asyncio
import socket

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bot.emulator.emulator import Emulator
from bot.emulator.limits import Faults
from bot.emulator.server import EmulatorServer
from bot.http import BotApiRequest

TOKEN = "7000000009:HTTP-TEST"


async def test_calls_uploads_and_timeouts_through_the_emulator():
    emulator = Emulator(faults=Faults(timeout_rate=1.0, timeout_seconds=5, seed=1))
    emulator.create_bot(TOKEN, "http_test_bot")
    person = emulator.create_user("서준")["id"]
    emulator.send_text(TOKEN, person, "/start")
    async with EmulatorServer(emulator) as server:
        request = BotApiRequest(read_timeout=0.5, write_timeout=0.5)
        async with Bot(TOKEN, base_url=server.base_url, request=request) as bot:
            assert (await bot.get_me()).username == "http_test_bot"
            with pytest.raises(TimedOut):  # the emulator holds the send longer than we wait
                await bot.send_message(person, "안녕하세요")
            emulator.faults.timeout_rate = 0.0
            sent = await bot.send_document(
                person, b"\xef\xbb\xbf\xec\x9d\xb4\xeb\xa6\x84", filename="명단.csv"
            )
            assert sent.document.file_name == "명단.csv"
    stored = emulator.messages(person)[-1]["document"]
    assert stored["data"] == b"\xef\xbb\xbf\xec\x9d\xb4\xeb\xa6\x84"
    await emulator.close()


async def test_a_refused_connection_is_a_network_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    request = BotApiRequest(connect_timeout=1)
    with pytest.raises(NetworkError) as caught:
        async with Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=request) as bot:
            await asyncio.wait_for(bot.send_message(1, "x"), 5)
    assert not isinstance(caught.value, TimedOut)


def test_retry_after_is_read_in_seconds_without_a_warning(monkeypatch):
    """Telegram's "retry after N" is read as seconds, whichever type PTB gives (int today, a
    timedelta with PTB_TIMEDELTA=1 or in its next major version), and no warning is logged."""
    import datetime as dt
    import warnings

    from telegram.error import RetryAfter

    from bot.telegram_io import retry_after_seconds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PTB's own constructor reads the value too
        as_int = RetryAfter(3)
        as_timedelta = RetryAfter(dt.timedelta(seconds=2.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation warning here would fail the test
        assert retry_after_seconds(as_int) == 3.0
        monkeypatch.setenv("PTB_TIMEDELTA", "1")
        assert retry_after_seconds(as_timedelta) == 2.5
