"""Hostile input: random updates thrown at the running bot (hypothesis).

Commands with random arguments (every command the bot registers), random and forged callback
data (every button prefix it registers), texts at and over the limits, odd Unicode, HTML and
template syntax in names and answers, people who never registered, groups nobody linked,
edited messages, channel posts. Afterwards: nothing raised unhandled, every Bot API call the
bot made was valid (the emulator rejects what Telegram rejects), and no user text was ever
read as HTML or as a template.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.config import Config
from bot.local import LocalOptions, LocalTelegram
from tests.conftest import fast_chat_limits

MARKUP = [
    "<b>굵게</b>",
    "<script>x</script>",
    "&amp;",
    "&",
    "<",
    "{{ 7*7 }}",
    "{% raw %}",
    "%(name)s",
    "%s",
    "\u202e",
    "\u200b",
    "👩‍👩‍👧",
    "\x00",
]


class BotInAThread:
    """The bot running in its own event loop thread, so sync hypothesis tests can drive it."""

    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        delivery, limits = fast_chat_limits()
        self.local = LocalTelegram(
            config.replace(delivery=delivery),
            LocalOptions(run_scheduler=False, poll_timeout=1, limits=limits),
        )
        self.run(self.local.start())

    def run(self, coroutine: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def close(self) -> None:
        self.run(self.local.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Problems(logging.Handler):
    """Collects errors from the bot: unhandled exceptions and refused Bot API calls."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name == "moim.errors" or "Bot API call failed" in message:
            self.records.append(message)


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("hostile") / "moim.sqlite3"
    config = Config().replace(
        database={"url": f"sqlite+aiosqlite:///{path}"},
        base_dir=path.parent,
        bot={"admins": []},
    )
    running = BotInAThread(config)
    emulator = running.local.emulator
    token = running.local.token
    world = {
        "registered": [],
        "strangers": [emulator.create_user(f"낯선이{n}")["id"] for n in range(3)],
        "group": emulator.create_group("아무도 연결 안 한 방")["id"],
    }
    for n in range(3):
        name = f"<b>회원{n}</b> {{{{ 7*7 }}}}"
        user = emulator.create_user(name, language_code="en" if n else "ko")
        world["registered"].append(user["id"])
        emulator.send_text(token, user["id"], "/start")
        running.run(running.local.settle())
        notice = emulator.messages(user["id"])[-1]
        for label_data in _button_data(notice)[:1]:
            emulator.press(token, user["id"], user["id"], notice["message_id"], label_data)
            running.run(running.local.settle())
        age = emulator.messages(user["id"])[-1]
        emulator.press(token, user["id"], user["id"], age["message_id"], _button_data(age)[0])
        running.run(running.local.settle())
    for person in world["registered"] + world["strangers"][:1]:
        emulator.add_member(world["group"], person)
    emulator.add_bot_to_group(token, world["group"], by_user_id=world["registered"][0])
    running.run(running.local.settle())
    application = running.local.application
    commands = sorted(
        {
            c
            for handlers in application.handlers.values()
            for h in handlers
            if isinstance(h, CommandHandler)
            for c in h.commands
        }
    )
    prefixes = sorted(
        {
            re.sub(r"\\(.)", r"\1", h.pattern.pattern).lstrip("^").split("(")[0]
            for handlers in application.handlers.values()
            for h in handlers
            if isinstance(h, CallbackQueryHandler) and h.pattern is not None
        }
    )
    problems = Problems()
    logging.getLogger().addHandler(problems)
    yield running, world, commands, prefixes, problems
    logging.getLogger().removeHandler(problems)
    running.close()


def _button_data(message: dict) -> list[str]:
    return [
        button["callback_data"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for button in row
        if "callback_data" in button
    ]


odd_text = st.one_of(
    st.text(min_size=1, max_size=60),
    st.sampled_from(MARKUP),
    st.builds(lambda a, b: a + b, st.sampled_from(MARKUP), st.text(max_size=20)),
    st.integers().map(str),
    st.just("가" * 4096),
    st.just("a" * 5000),
)


@st.composite
def actions(draw, commands: list[str], prefixes: list[str]):
    kind = draw(st.sampled_from(["command", "text", "press", "forged", "edit", "channel"]))
    who = draw(st.sampled_from(["registered", "stranger"]))
    where = draw(st.sampled_from(["private", "group"]))
    if kind == "command":
        argument = draw(st.one_of(st.just(""), odd_text))
        text = f"/{draw(st.sampled_from(commands))} {argument}".strip()
        return kind, who, where, text[:4096]
    if kind in ("text", "edit", "channel"):
        return kind, who, where, draw(odd_text).replace("\x00", "")[:4096] or "."
    if kind == "press":
        return kind, who, where, None
    arguments = draw(
        st.lists(
            st.one_of(st.integers(-(10**12), 10**12).map(str), st.text("abc-_.09", max_size=8)),
            max_size=5,
        )
    )
    data = ":".join([draw(st.sampled_from([*prefixes, "v0:x:y", "v1"])), *arguments])
    return kind, who, where, data[:64] or "v1"


def _act(running: BotInAThread, world: dict, action: tuple) -> None:
    kind, who, where, payload = action
    emulator, token = running.local.emulator, running.local.token
    people = world["registered"] if who == "registered" else world["strangers"]
    person = people[hash(str(payload)) % len(people)]
    in_group = where == "group" and person in (world["registered"] + world["strangers"][:1])
    chat = world["group"] if in_group else person
    if kind in ("command", "text") or (kind == "edit" and not emulator.history(chat)):
        emulator.send_text(token, person, payload, chat if in_group else None)
    elif kind == "edit":
        own = [
            m
            for m in emulator.history(chat)
            if m.get("from", {}).get("id") == person and "text" in m
        ]
        if own:
            emulator.edit_text(token, person, chat, own[-1]["message_id"], payload)
    elif kind == "channel":
        channel = world.setdefault("channel", emulator.create_channel("채널")["id"])
        emulator.channel_post(token, channel, payload)
    else:
        shown = [m for m in emulator.messages(chat) if _button_data(m)]
        if not shown:
            return
        message = shown[hash(str(action)) % len(shown)]
        if kind == "press":
            data = _button_data(message)[hash(str(action)) % len(_button_data(message))]
            emulator.press(token, person, chat, message["message_id"], data, forge=True)
        else:
            emulator.press(token, person, chat, message["message_id"], payload, forge=True)
    running.run(running.local.settle(timeout=60))


def test_random_updates_never_break_the_bot(bot):
    running, world, commands, prefixes, problems = bot
    assert "start" in commands and any(p.startswith("v1:org") for p in prefixes)
    before = running.local.emulator.stats.as_dict()["errors"]

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(actions(commands, prefixes), min_size=1, max_size=4))
    def check(batch):
        for action in batch:
            _act(running, world, action)
        assert problems.records == [], problems.records

    check()
    after = running.local.emulator.stats.as_dict()["errors"]
    refused = {
        code: n - before.get(code, 0) for code, n in after.items() if n - before.get(code, 0)
    }
    # 400 "message is not modified" is how Telegram answers an edit that changes nothing; the
    # bot treats it as done. Nothing else may have been refused.
    assert set(refused) <= {"400"} or not refused, refused


def test_names_with_markup_are_shown_literally(bot):
    running, *_ = bot
    emulator, token = running.local.emulator, running.local.token
    person = emulator.create_user("<b>굵은</b> {{ 7*7 }}")["id"]
    for step in ("/start", 0, 0):
        if step == "/start":
            emulator.send_text(token, person, step)
        else:
            last = emulator.messages(person)[-1]
            emulator.press(token, person, person, last["message_id"], _button_data(last)[step])
        running.run(running.local.settle())
    emulator.send_text(token, person, "/me")
    running.run(running.local.settle())
    profile = emulator.messages(person)[-1]
    assert "<b>굵은</b> {{ 7*7 }}" in profile["text"]  # what people see: not bold, not 49
    assert "&lt;b&gt;굵은&lt;/b&gt;" in profile["html"]
