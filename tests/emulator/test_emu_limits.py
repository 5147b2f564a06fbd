"""Flood limits: per private chat, per group, per bot, paid broadcasts; 429 with retry_after."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from telegram import Bot
from telegram.error import RetryAfter

from bot.emulator import Emulator, EmulatorServer, Limits
from bot.emulator.limits import RateLimiter

from .conftest import TOKEN

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


@pytest.fixture(autouse=True)
def frozen_time(emulator: Emulator) -> None:
    """Stop the buckets' clock so that no token refills while a test runs, however slow."""
    emulator.rate_limiter.clock = lambda: 1000.0


def seconds(value: int | dt.timedelta) -> float:
    """PTB 22 gives retry_after as int or timedelta depending on settings."""
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def people(emulator: Emulator, count: int) -> list[int]:
    """Persons who have each written to the bot."""
    ids = []
    for n in range(count):
        person = emulator.create_user(f"P{n}")
        emulator.send_text(TOKEN, person["id"], "/start")
        ids.append(person["id"])
    return ids


async def test_private_chat_allows_a_short_burst_then_429(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    for n in range(4):
        await bot.send_message(citizen["id"], f"reply part {n}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(citizen["id"], "one too many")
    assert seconds(caught.value.retry_after) >= 1
    assert emulator.stats.rate_limited == 1
    assert emulator.stats.rate_limited_per_chat[citizen["id"]] == 1
    assert emulator.stats.messages_per_chat[citizen["id"]] == 4
    assert len(emulator.messages(citizen["id"])) == 4


async def test_429_body_is_telegrams(server: EmulatorServer, citizen: dict[str, Any]) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"{server.base_url}{TOKEN}/") as client:
        for _ in range(4):
            await client.post("sendMessage", data={"chat_id": citizen["id"], "text": "x"})
        answer = await client.post("sendMessage", data={"chat_id": citizen["id"], "text": "x"})
    assert answer.status_code == 429
    body = answer.json()
    retry = body["parameters"]["retry_after"]
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry}",
        "parameters": {"retry_after": retry},
    }
    assert isinstance(retry, int) and retry >= 1


async def test_bot_wide_limit_is_30_per_second(emulator: Emulator, bot: Bot) -> None:
    chats = people(emulator, 31)
    for chat_id in chats[:30]:
        await bot.send_message(chat_id, "broadcast")
    with pytest.raises(RetryAfter):
        await bot.send_message(chats[30], "broadcast")
    assert emulator.stats.messages_sent == 30


async def test_group_limit_is_20_per_minute(emulator: Emulator, bot: Bot) -> None:
    organizer = emulator.create_user("Organizer")
    group = emulator.create_group("주민회", creator_id=organizer["id"])
    emulator.add_bot_to_group(TOKEN, group["id"], organizer["id"])
    for n in range(20):
        await bot.send_message(group["id"], f"notice {n}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(group["id"], "notice 21")
    assert seconds(caught.value.retry_after) == 3  # one message per 3 s refills the bucket


async def test_edits_count_toward_the_chat_but_not_the_bot(
    emulator: Emulator, server: EmulatorServer
) -> None:
    emulator.limits.bot_burst = 2
    chats = people(emulator, 2)
    async with Bot(TOKEN, base_url=server.base_url) as bot:
        first = await bot.send_message(chats[0], "a")
        await bot.send_message(chats[1], "b")
        for n in range(3):  # the chat bucket had 4; one went to the send
            await bot.edit_message_text(f"a{n}", chats[0], first.message_id)
        with pytest.raises(RetryAfter):
            await bot.edit_message_text("a-more", chats[0], first.message_id)


async def test_disabled_limits_let_everything_through(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    emulator.limits.enabled = False
    for n in range(50):
        await bot.send_message(citizen["id"], f"m{n}")
    assert emulator.stats.rate_limited == 0
    emulator.limits.enabled = True
    with pytest.raises(RetryAfter):
        for _ in range(5):
            await bot.send_message(citizen["id"], "limited again")


async def test_paid_broadcast_has_its_own_bigger_limit(emulator: Emulator, bot: Bot) -> None:
    chats = people(emulator, 61)
    for chat_id in chats[:60]:
        await bot.send_message(chat_id, "paid", allow_paid_broadcast=True)
    assert emulator.stats.paid_messages == 60
    assert emulator.stats.rate_limited == 0
    # the free bucket was not touched by paid messages
    await bot.send_message(chats[60], "free")
    emulator.limits.paid_burst = 60
    emulator.limits.paid_rate = 1.0
    emulator.reset_rate_limits()
    for chat_id in chats[:60]:
        emulator.send_text(TOKEN, chat_id, "again")
    with pytest.raises(RetryAfter):
        for chat_id in [*chats[:60], chats[60]]:
            await bot.send_message(chat_id, "paid", allow_paid_broadcast=True)
    assert emulator.stats.paid_messages == 120


def test_token_buckets_refill_and_rejections_take_nothing() -> None:
    now = [1000.0]
    limiter = RateLimiter(Limits(private_burst=2, private_rate=1.0), clock=lambda: now[0])
    assert limiter.acquire(1, 5, "private", send=True) == 0
    assert limiter.acquire(1, 5, "private", send=True) == 0
    assert limiter.acquire(1, 5, "private", send=True) == 1
    assert limiter.acquire(1, 5, "private", send=True) == 1
    now[0] += 0.5
    assert limiter.acquire(1, 5, "private", send=True) == 1  # half a token: wait 0.5 -> 1 s
    now[0] += 0.5
    assert limiter.acquire(1, 5, "private", send=True) == 0
    assert limiter.acquire(1, 6, "private", send=True) == 0  # other chats have their own
    limiter.limits.group_burst = 1
    assert limiter.acquire(1, -7, "group", send=True) == 0
    assert limiter.acquire(1, -7, "group", send=True) == 3
    now[0] += 2.9
    assert limiter.acquire(1, -7, "group", send=True) == 1
    now[0] += 0.1
    assert limiter.acquire(1, -7, "group", send=True) == 0
