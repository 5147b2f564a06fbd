"""The HTTP control API through EmulatorClient, in process and against `python -m bot.emulator`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from bot.emulator import EmulatorClient, EmulatorError, EmulatorServer

from .conftest import TOKEN

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client(server: EmulatorServer) -> AsyncIterator[EmulatorClient]:
    """An EmulatorClient on the in-process server."""
    async with EmulatorClient(server.control_url) as control:
        yield control


async def test_drive_and_read_over_http(client: EmulatorClient, bot: Bot) -> None:
    person = await client.create_user("하늘", username="haneul")
    update_id, message = await client.send_text(TOKEN, person["id"], "/start")
    assert update_id is not None and message["text"] == "/start"
    assert await client.pending_updates(TOKEN) == 1
    mark = await client.seq()
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("참여", callback_data="v1:join:1")]])
    await bot.send_message(person["id"], "첫째")
    sent = await bot.send_message(person["id"], "모임에 참여할까요?", reply_markup=keyboard)
    found = await client.wait_for_message(person["id"], since_seq=mark, text_contains="참여")
    assert found["message_id"] == sent.message_id
    by_predicate = await client.wait_for_message(
        person["id"], lambda m: m["text"].startswith("모임"), since_seq=mark
    )
    assert by_predicate["message_id"] == sent.message_id
    press = await client.press(TOKEN, person["id"], person["id"], sent.message_id, "v1:join:1")
    waiting = asyncio.create_task(client.wait_for_answer(press.query_id, timeout=10))
    await bot.answer_callback_query(press.query_id, text="참여 완료")
    assert (await waiting)["text"] == "참여 완료"
    await bot.send_document(person["id"], b"\x00\x01binary", filename="data.bin")
    records = await client.messages(person["id"])
    assert records[-1]["document"]["data"] == b"\x00\x01binary"
    assert [m["text"] for m in await client.all_bot_messages(since_seq=mark)][:2] == [
        "첫째",
        "모임에 참여할까요?",
    ]
    stats = await client.stats()
    assert stats["requests"]["sendMessage"] == 2
    assert stats["messages_per_chat"][str(person["id"])] == 3


async def test_settings_and_errors_over_http(client: EmulatorClient, bot: Bot) -> None:
    limits = await client.set_limits(enabled=False, private_burst=10)
    assert limits["enabled"] is False and limits["private_burst"] == 10
    faults = await client.set_faults(latency=0.0, error_rate=0.5, seed=4)
    assert faults["seed"] == 4
    await client.set_faults()
    with pytest.raises(EmulatorError, match=r"no user"):
        await client.send_text(TOKEN, 1, "hi")
    with pytest.raises(TimeoutError):
        person = await client.create_user("A")
        await client.wait_for_message(person["id"], timeout=0.2)
    with pytest.raises(TypeError):
        await client.set_limits(speed=3)
    group = await client.create_group("g", supergroup=True, creator_id=person["id"])
    await client.add_bot_to_group(TOKEN, group["id"], person["id"])
    info = await client.chat_info(group["id"])
    assert info["members"][str(person["id"])] == "creator"
    await client.reset_stats()
    assert (await client.stats())["requests"] == {}


@contextlib.asynccontextmanager
async def standalone(*args: str) -> AsyncIterator[str]:
    """Run `python -m bot.emulator` on a free port; yield its root URL; stop it after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.emulator",
        "--port",
        "0",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.search(r"ready at (http://\S+)", line)
        assert match, line
        yield match.group(1)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def test_standalone_process() -> None:
    async with (
        standalone("--token", TOKEN, "--no-limits", "--latency-ms", "1") as url,
        EmulatorClient(f"{url}/_emulator") as control,
        Bot(TOKEN, base_url=f"{url}/bot") as bot,
    ):
        assert (await control.get_limits())["enabled"] is False
        assert (await control.get_faults())["latency"] == 0.001
        person = await control.create_user("B")
        await control.send_text(TOKEN, person["id"], "/start")
        assert (await bot.get_me()).username == "moim_bot"
        [update] = await bot.get_updates()
        await bot.send_message(update.message.chat_id, "pong")
        reply = await control.wait_for_message(person["id"])
        assert reply["text"] == "pong"
