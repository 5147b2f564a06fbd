"""End-to-end helpers: people who type and tap in the emulator while the real bot answers."""

from __future__ import annotations

import json
from typing import Any

from bot.local import LocalTelegram


class Person:
    """Someone using Telegram: sends messages, taps buttons, reads what the bot sent them."""

    def __init__(
        self,
        local: LocalTelegram,
        first_name: str,
        *,
        language: str = "ko",
        last_name: str | None = None,
    ) -> None:
        self.local = local
        self.emulator = local.emulator
        user = self.emulator.create_user(first_name, last_name=last_name, language_code=language)
        self.id: int = user["id"]
        self.name = first_name

    async def say(
        self,
        text: str,
        chat_id: int | None = None,
        *,
        entities: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Send a message (``entities``: its bold, italic, links...) and return the bot's
        messages in that chat that it caused."""
        chat = chat_id if chat_id is not None else self.id
        since = self.emulator.seq
        self.emulator.send_text(self.local.token, self.id, text, chat_id, entities=entities)
        await self.local.settle()
        return self.since(since, chat)

    async def send_photo(
        self, data: bytes, caption: str | None = None, chat_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Send a picture (with a caption) and return the bot's messages it caused."""
        chat = chat_id if chat_id is not None else self.id
        since = self.emulator.seq
        self.emulator.send_photo(self.local.token, self.id, data, chat_id, caption=caption)
        await self.local.settle()
        return self.since(since, chat)

    async def send_file(
        self, filename: str, data: bytes, caption: str | None = None
    ) -> list[dict[str, Any]]:
        """Send a file (with a caption) in the private chat; the bot's messages it caused."""
        since = self.emulator.seq
        self.emulator.send_document(self.local.token, self.id, filename, data, caption=caption)
        await self.local.settle()
        return self.since(since, self.id)

    def since(self, seq: int, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Bot messages in a chat that are new or changed after ``seq``."""
        chat = chat_id if chat_id is not None else self.id
        return [m for m in self.emulator.messages(chat) if m["last_seq"] > seq]

    def inbox(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Every bot message in the chat (the private chat by default)."""
        return self.emulator.messages(chat_id if chat_id is not None else self.id)

    def last(self, chat_id: int | None = None) -> dict[str, Any]:
        """The bot's latest message in the chat."""
        return self.inbox(chat_id)[-1]

    async def tap(
        self, label: str, *, message: dict[str, Any] | None = None, chat_id: int | None = None
    ) -> dict[str, Any]:
        """Press the button whose text contains ``label`` (latest message that has one).

        Returns the callback answer, plus the messages the press caused under "messages".
        """
        chat = chat_id if chat_id is not None else self.id
        candidates = [message] if message else list(reversed(self.inbox(chat)))
        for candidate in candidates:
            for row in (candidate.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if label in button["text"] and "callback_data" in button:
                        return await self.press(candidate, button["callback_data"])
        raise AssertionError(f"no button {label!r} in chat {chat}: {buttons(candidates[:3])}")

    async def press(
        self, message: dict[str, Any], data: str, *, forge: bool = False
    ) -> dict[str, Any]:
        """Press a button by its callback data (``forge`` sends data no button carries)."""
        since = self.emulator.seq
        press = self.emulator.press(
            self.local.token,
            self.id,
            message["chat_id"],
            message["message_id"],
            data,
            forge=forge,
        )
        await self.local.settle()
        answer = await self.emulator.wait_for_answer(press.query_id, timeout=5)
        return {**answer, "messages": self.since(since, message["chat_id"])}


def buttons(messages: list[dict[str, Any]] | dict[str, Any]) -> list[str]:
    """Button labels of a message (or of several), for assertions and error messages."""
    if isinstance(messages, dict):
        messages = [messages]
    return [
        button["text"]
        for message in messages
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for button in row
    ]


def url_buttons(message: dict[str, Any]) -> list[str]:
    """The URLs of a message's link buttons."""
    return [
        button["url"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for button in row
        if "url" in button
    ]


def document_json(message: dict[str, Any]) -> Any:
    """The JSON document a message carries."""
    return json.loads(message["document"]["data"].decode("utf-8"))


async def register(person: Person, payload: str = "") -> list[dict[str, Any]]:
    """Go through /start, consent and the age check; returns the messages after the last tap."""
    await person.say(f"/start {payload}".strip())
    label = {"ko": "동의합니다", "en": "I agree"}
    language = "en" if "I agree" in buttons(person.last()) else "ko"
    await person.tap(label[language])
    answer = await person.tap("14" if language == "en" else "14세 이상")
    return answer["messages"]
