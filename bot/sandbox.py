"""`moim sandbox`: the emulator, the bot and a terminal chat in one process.

Type as a citizen, switch person with /as NAME, press buttons by number, move the clock with
/skip to see scheduled reminders. Everything goes through the real bot and the real Bot API
over HTTP, exactly as in production, only the "Telegram" is local.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from bot.clock import OffsetClock
from bot.config import Config
from bot.emulator.errors import EmulatorError
from bot.local import BOT_USERNAME, LocalOptions, LocalTelegram

DURATION = re.compile(r"^(\d+)\s*([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def run_sandbox(config: Config, *, name: str, database: str | None) -> int:
    """Start the sandbox and chat until /quit or end of input."""
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="moim-sandbox-") as scratch:
        path = Path(database) if database else Path(scratch) / "sandbox.sqlite3"
        config = config.replace(
            database={"url": f"sqlite+aiosqlite:///{path.resolve()}", "schema": ""},
            telegram={"token": ""},
        )
        return asyncio.run(Sandbox(config, first_name=name).run())


class Sandbox:
    """The terminal side: who is typing, where, and how the bot's messages are shown."""

    def __init__(self, config: Config, *, first_name: str, out=None) -> None:
        self.clock = OffsetClock()
        self.local = LocalTelegram(config, LocalOptions(clock=self.clock, poll_timeout=10))
        self.first_name = first_name
        self.out = out or sys.stdout
        self.people: dict[str, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None
        self.groups: dict[str, dict[str, Any]] = {}
        # Kept apart from the group dicts: those are the emulator's own chat objects, which it
        # serialises into updates (a set in them breaks every getUpdates).
        self.group_members: dict[int, set[int]] = {}
        self.chat: dict[str, Any] | None = None  # None: the private chat
        self.buttons: dict[int, list[dict[str, Any]]] = {}  # chat id -> last numbered buttons
        self.answered_link: str | None = None  # a t.me link a tap was answered with

    # --- output -------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line for the person at the terminal."""
        print(text, file=self.out, flush=True)

    def note(self, note: str, **values: Any) -> None:
        """Print one of the sandbox's own notes, in the current person's language."""
        self.say(self.text("sandbox/notes.txt", note=note, **values))

    def text(self, template: str, **values: Any) -> str:
        """Render a sandbox template in the current person's language."""
        language = self.current["language_code"] if self.current else "ko"
        return self.local.runtime.renderer.text(template, language, **values)

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        """The emulator tells us about every bot message, edit and button answer."""
        if self.current is None:
            return
        if event == "answer":
            if data.get("text"):
                self.say(f"  ↳ {data['text']}")
            if data.get("url"):  # Telegram opens it at once (the bot's chat, for a t.me link)
                self.answered_link = data["url"]
            return
        if event not in ("message", "edit"):
            return
        chat_id = data["chat_id"]
        here = self.chat["id"] if self.chat else self.current["id"]
        if chat_id != here:
            owner = next(
                (p["first_name"] for p in self.people.values() if p["id"] == chat_id), None
            )
            if owner is not None:
                preview = (data.get("text") or "").splitlines()[0:1]
                label = self.text("sandbox/notes.txt", note="for_someone", name=owner)
                self.say(f"  {label} {preview[0] if preview else ''}")
            return
        self.show(data, edited=event == "edit")

    def show(self, record: dict[str, Any], *, edited: bool = False) -> None:
        """Print a bot message with its buttons numbered."""
        marker = " " + self.text("sandbox/notes.txt", note="edited") if edited else ""
        self.say(f"┌─ moim{marker}")
        body = record.get("text") or ""
        if record.get("document"):
            body = f"📎 {record['document']['file_name']}\n{body}".strip()
        elif record.get("photo"):
            # A terminal cannot show the image: keep it as a file to open.
            folder = Path(tempfile.gettempdir()) / "moim-sandbox"
            folder.mkdir(exist_ok=True)
            image = folder / f"photo-{abs(record['chat_id'])}-{record['message_id']}.png"
            image.write_bytes(record["photo"])
            note = self.text("sandbox/notes.txt", note="image")
            body = f"🖼 {note}\n   {image}\n{body}".strip()
        for line in body.splitlines() or [""]:
            self.say(f"│ {line}")
        rows = (record.get("reply_markup") or {}).get("inline_keyboard", [])
        numbered: list[dict[str, Any]] = []
        for row in rows:
            cells = []
            for button in row:
                numbered.append({**button, "_message": record})
                cells.append(f"[{len(numbered)}] {button['text']}")
            self.say("│ " + "   ".join(cells))
        self.say("└─")
        if numbered:
            self.buttons[record["chat_id"]] = numbered
        elif any(
            b["_message"]["message_id"] == record["message_id"]
            for b in self.buttons.get(record["chat_id"], [])
        ):
            self.buttons.pop(record["chat_id"])  # that message has no buttons any more

    # --- input --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, then read lines until /quit or end of input."""
        await self.local.start()
        self.local.emulator.add_listener(self.on_event)
        try:
            self.become(self.first_name, "ko")
            runtime = self.local.runtime
            runtime.config = runtime.config.replace(bot={"admins": [self.current["id"]]})
            self.say(self.text("sandbox/banner.txt", name=self.first_name))
            reader = await _stdin_reader()
            while True:
                prompt = self.text(
                    "sandbox/prompt.txt",
                    name=self.current["first_name"],
                    chat=self.chat["title"] if self.chat else "",
                )
                print(prompt + " ", end="", file=self.out, flush=True)
                line = await reader.readline()
                if not line:
                    break
                if not await self.handle(line.decode("utf-8", "replace").strip()):
                    break
        finally:
            self.local.emulator.remove_listener(self.on_event)
            await self.local.stop()
        self.note("bye")
        return 0

    async def handle(self, line: str) -> bool:
        """Act on one line; False to stop."""
        if not line:
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command == "/quit":
            return False
        if command == "/as" and rest:
            parts = rest.split()
            language = "en" if len(parts) > 1 and parts[-1] in ("en", "english") else "ko"
            name = " ".join(parts[:-1]) if language == "en" and len(parts) > 1 else rest
            self.become(name, language)
            self.chat = None
        elif command == "/group" and rest:
            self.enter_group(rest)
            # Read before the bot answers: what it says on joining is shown as it comes.
            already = self.local.emulator.messages(self.chat["id"])
            await self.local.settle()
            if already:  # what was there before (e.g. a live card), with numbered buttons
                self.show(already[-1])
        elif command == "/private":
            self.chat = None
            self.note("private")
        elif command == "/people":
            self.note("people", names=", ".join(self.people))
        elif command == "/skip":
            await self.skip(rest)
        elif line.isdigit():
            await self.press(int(line))
        elif line.startswith(f"https://t.me/{BOT_USERNAME}"):
            await self.open_link(line)
        else:
            self.local.emulator.send_text(
                self.local.token,
                self.current["id"],
                line,
                self.chat["id"] if self.chat else None,
            )
            await self.local.settle()
        return True

    def become(self, name: str, language: str) -> None:
        """Switch to a person, creating them on first use."""
        person = self.people.get(name)
        if person is None:
            person = self.local.emulator.create_user(name, language_code=language)
            self.people[name] = person
            self.current = person
            self.note("new_person", name=name)
        self.current = person
        self.note("switched", name=name)

    def enter_group(self, title: str) -> None:
        """Go into a group chat (created on first use, with the bot added by this person)."""
        emulator = self.local.emulator
        group = self.groups.get(title)
        person_id = self.current["id"]
        if group is None:
            group = emulator.create_group(title)
            self.groups[title] = group
            emulator.add_member(group["id"], person_id)
            emulator.add_bot_to_group(self.local.token, group["id"], by_user_id=person_id)
        elif person_id not in self.group_members.get(group["id"], set()):
            emulator.add_member(group["id"], person_id)
        # Not in ``group``: that dict is the emulator's cached Chat object, sent in updates.
        self.group_members.setdefault(group["id"], set()).add(person_id)
        self.chat = group
        self.note("in_group", chat=title)

    async def press(self, number: int) -> None:
        """Press button ``number`` of the last message with buttons in this chat."""
        here = self.chat["id"] if self.chat else self.current["id"]
        numbered = self.buttons.get(here, [])
        if not 1 <= number <= len(numbered):
            self.note("no_button", number=number)
            return
        button = numbered[number - 1]
        if "url" in button:
            await self.open_link(button["url"])
            return
        message = button["_message"]
        try:
            self.local.emulator.press(
                self.local.token,
                self.current["id"],
                message["chat_id"],
                message["message_id"],
                button["callback_data"],
            )
        except EmulatorError:  # the button is gone, or this person cannot see it
            self.note("no_button", number=number)
            return
        await self.local.settle()
        link, self.answered_link = self.answered_link, None
        if link is not None:
            await self.open_link(link)

    async def open_link(self, url: str) -> None:
        """Open a t.me link to the bot: /start with its payload, in the private chat."""
        self.note("opened_link")
        parsed = urlparse(url)
        if parsed.netloc != "t.me" or parsed.path.strip("/") != BOT_USERNAME:
            self.say(url)
            return
        payload = parse_qs(parsed.query).get("start", [""])[0]
        self.chat = None
        self.local.emulator.send_text(
            self.local.token, self.current["id"], f"/start {payload}".strip()
        )
        await self.local.settle()

    async def skip(self, amount: str) -> None:
        """Move the clock ahead and run whatever became due."""
        match = DURATION.match(amount)
        if not match:
            self.note("bad_skip")
            return
        delta = dt.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
        now = self.clock.skip(delta)
        runtime = self.local.runtime
        self.note(
            "skipped",
            time=runtime.renderer.format_moment(
                now, self.current["language_code"] or "ko", None, "datetime"
            ),
        )
        await runtime.scheduler.run_due()
        await self.local.settle()


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
