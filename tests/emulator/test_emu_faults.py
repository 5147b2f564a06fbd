"""Injected network trouble: latency, 500s that lose the message, stalls that may or may not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from telegram import Bot
from telegram.error import NetworkError

from bot.emulator import Emulator, Faults

from .conftest import TOKEN

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def world() -> tuple[Emulator, int]:
    """A fresh emulator with limits off and one person who started the bot."""
    emulator = Emulator()
    emulator.limits.enabled = False
    emulator.create_bot(TOKEN, "moim_test_bot")
    person = emulator.create_user("A")
    emulator.send_text(TOKEN, person["id"], "/start")
    return emulator, person["id"]


async def outcomes(seed: int, count: int) -> tuple[list[int], Emulator, int]:
    """Status codes of count sendMessage calls at a 30 % error rate."""
    emulator, chat_id = world()
    emulator.set_faults(Faults(error_rate=0.3, seed=seed))
    statuses = []
    for n in range(count):
        status, _ = await emulator.call(TOKEN, "sendMessage", {"chat_id": chat_id, "text": f"{n}"})
        statuses.append(status)
    return statuses, emulator, chat_id


async def test_errors_are_repeatable_with_a_seed_and_lose_the_message() -> None:
    first, emulator, chat_id = await outcomes(seed=7, count=60)
    second, _, _ = await outcomes(seed=7, count=60)
    other, _, _ = await outcomes(seed=8, count=60)
    assert first == second
    assert first != other
    assert set(first) == {200, 500}
    failed = first.count(500)
    assert 8 <= failed <= 30
    assert emulator.stats.faults["error"] == failed
    assert len(emulator.messages(chat_id)) == first.count(200)


async def test_getupdates_is_never_faulted() -> None:
    emulator, chat_id = world()
    emulator.set_faults(Faults(error_rate=1.0, seed=1))
    assert (await emulator.call(TOKEN, "getUpdates", {}))[0] == 200
    assert (await emulator.call(TOKEN, "getMe", {}))[0] == 200
    assert (await emulator.call(TOKEN, "sendMessage", {"chat_id": chat_id, "text": "x"}))[0] == 500
    status, body = await emulator.call(TOKEN, "sendMessage", {"chat_id": chat_id})
    assert status == 400  # malformed calls fail the same way every time
    assert body["description"] == "Bad Request: message text is empty"


async def test_ptb_sees_a_500_as_a_network_error(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    emulator.set_faults(Faults(error_rate=1.0, seed=3))
    with pytest.raises(NetworkError, match=r"Internal Server Error"):
        await bot.send_message(citizen["id"], "x")
    assert emulator.messages(citizen["id"]) == []


async def test_stalls_deliver_half_of_the_time() -> None:
    emulator, chat_id = world()
    emulator.set_faults(Faults(timeout_rate=1.0, timeout_seconds=60, seed=11))
    calls = [
        asyncio.create_task(
            emulator.call(TOKEN, "sendMessage", {"chat_id": chat_id, "text": f"{n}"})
        )
        for n in range(20)
    ]
    await emulator.wait_for(lambda: sum(emulator.stats.faults.values()) == 20, timeout=10)
    assert not any(call.done() for call in calls)  # the requests hang, as a dead network does
    emulator.interrupt()
    statuses = [status for status, _ in await asyncio.gather(*calls)]
    delivered = emulator.stats.faults["timeout_delivered"]
    assert 0 < delivered < 20
    assert delivered + emulator.stats.faults["timeout_dropped"] == 20
    assert len(emulator.messages(chat_id)) == delivered == statuses.count(200)


async def test_latency_is_added_to_every_call(emulator: Emulator, bot: Bot) -> None:
    emulator.set_faults(Faults(latency=0.05))
    started = time.perf_counter()
    await bot.get_me()
    assert time.perf_counter() - started >= 0.05
