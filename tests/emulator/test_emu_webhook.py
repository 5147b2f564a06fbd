"""Webhook delivery: secret header, order, retries after failures, round robin, PTB webhooks."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from telegram import Bot, Update
from telegram.error import Conflict
from telegram.ext import CommandHandler, ContextTypes

from bot.emulator import Emulator, EmulatorServer, LocalServer

from .conftest import TOKEN, build_app

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class Target:
    """A webhook receiver that records what it gets and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None, default: int = 200):
        self.statuses = list(statuses or [])
        self.default = default
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.hold: asyncio.Event | None = None
        self.waiting = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.hold is not None:
            self.waiting += 1
            await self.hold.wait()
            self.waiting -= 1
        status = self.statuses.pop(0) if self.statuses else self.default
        if status < 300:
            self.received.append(json.loads(body))
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def targets() -> AsyncIterator[list[tuple[Target, LocalServer]]]:
    """Three webhook receivers on free ports."""
    running = []
    for _ in range(3):
        target = Target()
        server = LocalServer(target)
        await server.start()
        running.append((target, server))
    yield running
    for _, server in running:
        await server.stop()


def delivered(emulator: Emulator, count: int) -> Any:
    """Predicate: at least count updates were delivered successfully."""
    return lambda: sum(d["ok"] for d in emulator.webhook_deliveries(TOKEN)) >= count


async def test_updates_arrive_with_the_secret_and_in_order(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], targets: list
) -> None:
    target, server = targets[0]
    await bot.get_updates(offset=-1)  # drop the fixture's /start
    await bot.get_updates(offset=(await bot.get_updates())[-1].update_id + 1)
    assert await bot.set_webhook(f"{server.url}/hook", secret_token="s3cret-token_1")
    ids = [emulator.send_text(TOKEN, citizen["id"], f"m{n}")[0] for n in range(5)]
    await emulator.wait_for(delivered(emulator, 5), timeout=10)
    assert [u["update_id"] for u in target.received] == ids
    assert target.received[0]["message"]["text"] == "m0"
    assert {h["x-telegram-bot-api-secret-token"] for h in target.headers} == {"s3cret-token_1"}
    assert {h["content-type"] for h in target.headers} == {"application/json"}
    info = await bot.get_webhook_info()
    assert info.url == f"{server.url}/hook"
    assert info.pending_update_count == 0
    with pytest.raises(Conflict, match=r"(?i)can't use getUpdates method while webhook is active"):
        await bot.get_updates()
    assert await bot.delete_webhook()
    emulator.send_text(TOKEN, citizen["id"], "polling again")
    assert [u.message.text for u in await bot.get_updates()] == ["polling again"]


async def test_failed_delivery_is_retried(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], targets: list
) -> None:
    target, server = targets[0]
    target.statuses = [500, 502]
    await bot.set_webhook(f"{server.url}/hook", drop_pending_updates=True)
    update_id, _ = emulator.send_text(TOKEN, citizen["id"], "important")
    await emulator.wait_for(delivered(emulator, 1), timeout=10)
    attempts = [(d["update_id"], d["status"]) for d in emulator.webhook_deliveries(TOKEN)]
    assert attempts == [(update_id, 500), (update_id, 502), (update_id, 200)]
    assert [u["update_id"] for u in target.received] == [update_id]
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 502 Bad Gateway"
    assert emulator.stats.webhook_failures == 2


async def test_an_update_can_be_delivered_twice(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], targets: list
) -> None:
    target, server = targets[0]
    await bot.set_webhook(f"{server.url}/hook", drop_pending_updates=True)
    update_id, _ = emulator.send_text(TOKEN, citizen["id"], "/sign")
    await emulator.wait_for(delivered(emulator, 1), timeout=10)
    emulator.redeliver(TOKEN, update_id)
    await emulator.wait_for(delivered(emulator, 2), timeout=10)
    assert [u["update_id"] for u in target.received] == [update_id, update_id]


async def test_unreachable_webhook_keeps_updates_pending(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    await bot.set_webhook(f"http://127.0.0.1:{dead_port}/hook", drop_pending_updates=True)
    emulator.send_text(TOKEN, citizen["id"], "lost?")
    await emulator.wait_for(lambda: len(emulator.webhook_deliveries(TOKEN)) >= 2, timeout=10)
    assert emulator.pending_updates(TOKEN) == 1
    assert "ConnectError" in emulator.webhook_deliveries(TOKEN)[0]["error"]
    await bot.delete_webhook()
    assert [u.message.text for u in await bot.get_updates()] == ["lost?"]


async def test_round_robin_over_three_instances(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], targets: list
) -> None:
    urls = [f"{server.url}/hook" for _, server in targets]
    emulator.set_webhook_targets(TOKEN, urls)
    await bot.set_webhook(urls[0], secret_token="s", drop_pending_updates=True)
    for n in range(6):
        emulator.send_text(TOKEN, citizen["id"], f"m{n}")
    await emulator.wait_for(delivered(emulator, 6), timeout=10)
    assert [len(target.received) for target, _ in targets] == [2, 2, 2]
    # one instance goes down: its share goes to the others, nothing is lost
    targets[1][0].default = 503
    ids = [emulator.send_text(TOKEN, citizen["id"], f"n{n}")[0] for n in range(6)]
    await emulator.wait_for(delivered(emulator, 12), timeout=10)
    got = sorted(u["update_id"] for target, _ in targets for u in target.received[-6:])
    assert set(ids) <= set(got)
    assert len(targets[1][0].received) == 2
    assert emulator.pending_updates(TOKEN) == 0


async def test_max_connections_bounds_deliveries_in_flight(
    emulator: Emulator, bot: Bot, citizen: dict[str, Any], targets: list
) -> None:
    target, server = targets[0]
    target.hold = asyncio.Event()
    await bot.set_webhook(f"{server.url}/hook", max_connections=2, drop_pending_updates=True)
    for n in range(5):
        emulator.send_text(TOKEN, citizen["id"], f"m{n}")
    queue = emulator.bots[TOKEN].queue
    await emulator.wait_for(lambda: sum(u.in_flight for u in queue) == 2, timeout=10)
    assert sum(u.in_flight for u in queue) == 2
    target.hold.set()
    await emulator.wait_for(delivered(emulator, 5), timeout=10)
    assert [u["message"]["text"] for u in target.received] == [f"m{n}" for n in range(5)]


async def test_ptb_application_in_webhook_mode(
    emulator: Emulator, server: EmulatorServer, citizen: dict[str, Any]
) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text("webhook reply")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(server)
    app.add_handler(CommandHandler("ping", echo))
    async with app:
        await app.start()
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="tg",
            webhook_url=f"http://127.0.0.1:{port}/tg",
            secret_token="moim-secret",
            drop_pending_updates=True,
        )
        try:
            emulator.send_text(TOKEN, citizen["id"], "/ping")
            reply = await emulator.wait_for_message(citizen["id"], timeout=10)
        finally:
            await app.updater.stop()
            await app.stop()
    assert reply["text"] == "webhook reply"
    assert emulator.webhook_deliveries(TOKEN)[-1]["status"] == 200
