"""EmulatorClient: drive an emulator in another process through its HTTP control API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.emulator.control import decode, encode
from bot.emulator.emulator import CallbackPress
from bot.emulator.errors import EmulatorError


class EmulatorClient:
    """The Emulator's injection and read methods, over HTTP (same names and arguments)."""

    def __init__(self, control_url: str, *, timeout: float = 60.0):
        """control_url is EmulatorServer.control_url, e.g. http://127.0.0.1:8081/_emulator."""
        self.control_url = control_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> EmulatorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    async def _call(self, name: str, **kwargs: Any) -> Any:
        response = await self._client.post(f"{self.control_url}/{name}", json=encode(kwargs))
        body = response.json()
        if body.get("ok"):
            return decode(body["result"])
        if body.get("type") == "TimeoutError":
            raise TimeoutError(body.get("error"))
        if body.get("type") == "TypeError":
            raise TypeError(body.get("error"))
        raise EmulatorError(body.get("error", f"control call {name} failed"))

    # -- setting up the world -------------------------------------------------------------

    async def create_bot(
        self, token: str, username: str, first_name: str = "Bot", *, privacy_mode: bool = True
    ) -> dict[str, Any]:
        """See Emulator.create_bot."""
        return await self._call(
            "create_bot",
            token=token,
            username=username,
            first_name=first_name,
            privacy_mode=privacy_mode,
        )

    async def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ko",
    ) -> dict[str, Any]:
        """See Emulator.create_user."""
        return await self._call(
            "create_user",
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )

    async def create_group(
        self,
        title: str,
        supergroup: bool = False,
        *,
        creator_id: int | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        """See Emulator.create_group."""
        return await self._call(
            "create_group",
            title=title,
            supergroup=supergroup,
            creator_id=creator_id,
            username=username,
        )

    async def create_channel(
        self, title: str, username: str | None = None, *, creator_id: int | None = None
    ) -> dict[str, Any]:
        """See Emulator.create_channel."""
        return await self._call(
            "create_channel", title=title, username=username, creator_id=creator_id
        )

    async def add_member(
        self, chat_id: int, user_id: int, *, status: str = "member", announce: bool = True
    ) -> dict[str, Any] | None:
        """See Emulator.add_member."""
        return await self._call(
            "add_member", chat_id=chat_id, user_id=user_id, status=status, announce=announce
        )

    async def remove_member(self, chat_id: int, user_id: int, *, announce: bool = True) -> None:
        """See Emulator.remove_member."""
        await self._call("remove_member", chat_id=chat_id, user_id=user_id, announce=announce)

    async def add_bot_to_group(
        self, token: str, chat_id: int, by_user_id: int, *, admin: bool = False
    ) -> dict[str, Any]:
        """See Emulator.add_bot_to_group."""
        return await self._call(
            "add_bot_to_group", token=token, chat_id=chat_id, by_user_id=by_user_id, admin=admin
        )

    async def promote(self, chat_id: int, user_id: int, status: str = "administrator") -> None:
        """See Emulator.promote."""
        await self._call("promote", chat_id=chat_id, user_id=user_id, status=status)

    async def migrate_to_supergroup(self, chat_id: int) -> int:
        """See Emulator.migrate_to_supergroup."""
        return await self._call("migrate_to_supergroup", chat_id=chat_id)

    # -- people acting --------------------------------------------------------------------

    async def send_text(
        self,
        token: str,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        *,
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """See Emulator.send_text."""
        update_id, message = await self._call(
            "send_text",
            token=token,
            user_id=user_id,
            text=text,
            chat_id=chat_id,
            reply_to=reply_to,
            entities=entities,
        )
        return update_id, message

    async def open_chats(self, token: str, user_ids: list[int]) -> int:
        """See Emulator.open_chats."""
        return await self._call("open_chats", token=token, user_ids=user_ids)

    async def send_photo(
        self,
        token: str,
        user_id: int,
        data: bytes,
        chat_id: int | None = None,
        caption: str | None = None,
        caption_entities: list[dict[str, Any]] | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """See Emulator.send_photo."""
        update_id, message = await self._call(
            "send_photo",
            token=token,
            user_id=user_id,
            data=data,
            chat_id=chat_id,
            caption=caption,
            caption_entities=caption_entities,
        )
        return update_id, message

    async def send_document(
        self,
        token: str,
        user_id: int,
        filename: str,
        data: bytes,
        chat_id: int | None = None,
        caption: str | None = None,
        mime_type: str | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """See Emulator.send_document."""
        update_id, message = await self._call(
            "send_document",
            token=token,
            user_id=user_id,
            filename=filename,
            data=data,
            chat_id=chat_id,
            caption=caption,
            mime_type=mime_type,
        )
        return update_id, message

    async def edit_text(
        self, token: str, user_id: int, chat_id: int, message_id: int, text: str
    ) -> tuple[int | None, dict[str, Any]]:
        """See Emulator.edit_text."""
        update_id, message = await self._call(
            "edit_text",
            token=token,
            user_id=user_id,
            chat_id=chat_id,
            message_id=message_id,
            text=text,
        )
        return update_id, message

    async def press(
        self,
        token: str,
        user_id: int,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        forge: bool = False,
    ) -> CallbackPress:
        """See Emulator.press."""
        result = await self._call(
            "press",
            token=token,
            user_id=user_id,
            chat_id=chat_id,
            message_id=message_id,
            callback_data=callback_data,
            forge=forge,
        )
        return CallbackPress(**result).bind(self)

    async def send_many(self, token: str, messages: list[dict[str, Any]]) -> list[int | None]:
        """See Emulator.send_many."""
        return await self._call("send_many", token=token, messages=messages)

    async def press_many(self, token: str, presses: list[dict[str, Any]]) -> list[str]:
        """See Emulator.press_many."""
        return await self._call("press_many", token=token, presses=presses)

    async def answer_report(self, query_ids: list[str]) -> dict[str, Any]:
        """See Emulator.answer_report."""
        return await self._call("answer_report", query_ids=query_ids)

    # a deadline per wait is the API tests want, hence the timeout parameter
    async def wait_for_answer(self, query_id: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """See Emulator.wait_for_answer."""
        return await self._call("wait_for_answer", query_id=query_id, timeout=timeout)

    async def callback_answer(self, query_id: str) -> dict[str, Any] | None:
        """See Emulator.callback_answer."""
        return await self._call("callback_answer", query_id=query_id)

    async def block_bot(self, token: str, user_id: int) -> int | None:
        """See Emulator.block_bot."""
        return await self._call("block_bot", token=token, user_id=user_id)

    async def unblock_bot(self, token: str, user_id: int) -> int | None:
        """See Emulator.unblock_bot."""
        return await self._call("unblock_bot", token=token, user_id=user_id)

    async def channel_post(
        self, token: str, chat_id: int, text: str
    ) -> tuple[int | None, dict[str, Any]]:
        """See Emulator.channel_post."""
        update_id, message = await self._call(
            "channel_post", token=token, chat_id=chat_id, text=text
        )
        return update_id, message

    # -- reading --------------------------------------------------------------------------

    async def messages(
        self, chat_id: int, *, token: str | None = None, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """See Emulator.messages."""
        return await self._call(
            "messages", chat_id=chat_id, token=token, include_deleted=include_deleted
        )

    async def all_bot_messages(
        self, since_seq: int = 0, *, token: str | None = None
    ) -> list[dict[str, Any]]:
        """See Emulator.all_bot_messages."""
        return await self._call("all_bot_messages", since_seq=since_seq, token=token)

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline per wait is the API
        since_seq: int = 0,
        *,
        token: str | None = None,
        text_contains: str | None = None,
    ) -> dict[str, Any]:
        """See Emulator.wait_for_message; a Python predicate is applied on this side."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching bot message in chat {chat_id} within {timeout} s")
            record = await self._call(
                "wait_for_message",
                chat_id=chat_id,
                timeout=left,
                since_seq=since_seq,
                token=token,
                text_contains=text_contains,
            )
            if predicate is None or predicate(record):
                return record
            since_seq = record["last_seq"]

    async def history(self, chat_id: int, *, token: str | None = None) -> list[dict[str, Any]]:
        """See Emulator.history."""
        return await self._call("history", chat_id=chat_id, token=token)

    async def pending_updates(self, token: str) -> int:
        """See Emulator.pending_updates."""
        return await self._call("pending_updates", token=token)

    async def webhook_deliveries(self, token: str) -> list[dict[str, Any]]:
        """See Emulator.webhook_deliveries."""
        return await self._call("webhook_deliveries", token=token)

    async def commands(
        self, token: str, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """See Emulator.commands."""
        return await self._call("commands", token=token, scope=scope, language_code=language_code)

    async def chat_info(self, chat_id: int) -> dict[str, Any]:
        """See Emulator.chat_info."""
        return await self._call("chat_info", chat_id=chat_id)

    async def chat_action(self, token: str, chat_id: int) -> str | None:
        """See Emulator.chat_action."""
        return await self._call("chat_action", token=token, chat_id=chat_id)

    async def stats(self) -> dict[str, Any]:
        """Emulator.stats.as_dict()."""
        return await self._call("stats")

    async def seq(self) -> int:
        """Emulator.seq."""
        return await self._call("seq")

    # -- runtime settings -----------------------------------------------------------------

    async def set_webhook_targets(self, token: str, urls: list[str] | None) -> None:
        """See Emulator.set_webhook_targets."""
        await self._call("set_webhook_targets", token=token, urls=urls)

    async def redeliver(self, token: str, update_id: int) -> None:
        """See Emulator.redeliver."""
        await self._call("redeliver", token=token, update_id=update_id)

    async def reset_rate_limits(self) -> None:
        """See Emulator.reset_rate_limits."""
        await self._call("reset_rate_limits")

    async def reset_stats(self) -> None:
        """See Emulator.reset_stats."""
        await self._call("reset_stats")

    async def get_limits(self) -> dict[str, Any]:
        """The Limits fields."""
        return await self._call("get_limits")

    async def set_limits(self, **fields: Any) -> dict[str, Any]:
        """Change Limits fields, e.g. set_limits(enabled=False)."""
        return await self._call("set_limits", **fields)

    async def get_faults(self) -> dict[str, Any]:
        """The Faults fields."""
        return await self._call("get_faults")

    async def set_faults(self, **fields: Any) -> dict[str, Any]:
        """Replace Faults, e.g. set_faults(latency=0.05, error_rate=0.01, seed=1)."""
        return await self._call("set_faults", **fields)
