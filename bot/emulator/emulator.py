"""The Emulator: a Telegram stand-in that tests and the sandbox set up, drive and inspect."""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bot.emulator.content import bot_command_entities
from bot.emulator.errors import EmulatorError
from bot.emulator.limits import Faults, Limits
from bot.emulator.methods import BotApiMethods
from bot.emulator.state import (
    BotState,
    CallbackRecord,
    Chat,
    QueuedUpdate,
    StoredMessage,
    User,
)
from bot.emulator.webhook import WebhookDispatcher

# Service messages reach every bot in a group, privacy mode or not.
_SERVICE_KEYS = frozenset(
    {
        "new_chat_members",
        "left_chat_member",
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "group_chat_created",
        "supergroup_chat_created",
        "new_chat_title",
    }
)


@dataclass
class CallbackPress:
    """A button press injected by a test: its update and the query id to await the answer."""

    update_id: int | None
    query_id: str
    callback_query: dict[str, Any]

    def bind(self, source: Any) -> CallbackPress:
        """Remember where to wait for the answer (an Emulator or EmulatorClient)."""
        # not a dataclass field, so asdict() and the control API never see it
        object.__setattr__(self, "_source", source)
        return self

    async def answer(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline per wait is the API
    ) -> dict[str, Any]:
        """Wait for the bot's answerCallbackQuery (see Emulator.wait_for_answer)."""
        source = getattr(self, "_source", None)
        if source is None:
            raise EmulatorError("this CallbackPress is not bound to an emulator")
        return await source.wait_for_answer(self.query_id, timeout)


class Emulator(BotApiMethods):
    """Telegram's side of the Bot API, in memory: bots, people, chats and their messages."""

    def __init__(
        self,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        limits: Limits | None = None,
        faults: Faults | None = None,
        strict_html: bool = True,
        webhook_retry_base: float = 0.05,
        webhook_retry_max: float = 5.0,
        webhook_timeout: float = 10.0,
        first_update_id: int = 1,
    ):
        """clock gives message dates (aware UTC datetimes; default: now); strict_html=False
        accepts a bare "&" as Telegram does; webhook_* set delivery retries and timeout."""
        super().__init__(
            clock=clock,
            limits=limits,
            faults=faults,
            strict_html=strict_html,
            webhook_retry_base=webhook_retry_base,
            webhook_retry_max=webhook_retry_max,
            webhook_timeout=webhook_timeout,
            first_update_id=first_update_id,
        )
        self._dispatchers: dict[str, WebhookDispatcher] = {}
        self._http: httpx.AsyncClient | None = None
        self._queries: dict[str, CallbackRecord] = {}
        self._bot_log: list[StoredMessage] = []

    # -- setting up the world -------------------------------------------------------------

    def create_bot(
        self, token: str, username: str, first_name: str = "Bot", *, privacy_mode: bool = True
    ) -> dict[str, Any]:
        """Register a bot; its id is the token's numeric prefix when it has one."""
        if token in self.bots:
            raise EmulatorError(f"bot with token {token!r} exists")
        prefix = token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() and ":" in token else next(self._bot_ids)
        if bot_id in self.bots_by_id or bot_id in self.users:
            raise EmulatorError(f"id {bot_id} is taken")
        user = User(bot_id, True, first_name, username=username)
        bot = BotState(token, user, privacy_mode=privacy_mode, next_update_id=self.first_update_id)
        self.bots[token] = bot
        self.bots_by_id[bot_id] = bot
        return user.to_api()

    def create_user(
        self,
        first_name: str,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ko",
    ) -> dict[str, Any]:
        """Register a person (with their private chat, id == user id)."""
        user_id = next(self._user_ids)
        user = User(user_id, False, first_name, last_name, username, language_code)
        self.users[user_id] = user
        self.chats[user_id] = Chat(
            user_id,
            "private",
            username=username,
            first_name=first_name,
            last_name=last_name,
        )
        return user.to_api()

    def open_chats(self, token: str, user_ids: list[int]) -> int:
        """These people opened a chat with the bot some time ago (no update now); for
        preparing large audiences. Returns how many chats were newly opened."""
        bot = self._bot(token)
        opened = 0
        for user_id in user_ids:
            chat = self.chats[self._person(user_id).id]
            if bot.user.id not in chat.started:
                chat.started.add(bot.user.id)
                opened += 1
        return opened

    def create_group(
        self,
        title: str,
        supergroup: bool = False,
        *,
        creator_id: int | None = None,
        username: str | None = None,
    ) -> dict[str, Any]:
        """Create a group (negative id) or supergroup (-100... id), optionally with a creator."""
        if supergroup:
            chat_id = -next(self._supergroup_ids)
        else:
            chat_id = -next(self._group_ids)
            if username:
                raise EmulatorError("only supergroups and channels have usernames")
        return self._add_chat(
            chat_id, "supergroup" if supergroup else "group", title, username, creator_id
        )

    def create_channel(
        self, title: str, username: str | None = None, *, creator_id: int | None = None
    ) -> dict[str, Any]:
        """Create a channel (-100... id)."""
        return self._add_chat(-next(self._supergroup_ids), "channel", title, username, creator_id)

    def _add_chat(
        self, chat_id: int, kind: str, title: str, username: str | None, creator_id: int | None
    ) -> dict[str, Any]:
        chat = Chat(chat_id, kind, title=title, username=username)
        if creator_id is not None:
            self._person(creator_id)
            chat.members[creator_id] = "creator"
        if username:
            key = username.lower()
            if key in self._usernames:
                raise EmulatorError(f"username @{username} is taken")
            self._usernames[key] = chat_id
        self.chats[chat_id] = chat
        return chat.to_api()

    def add_member(
        self, chat_id: int, user_id: int, *, status: str = "member", announce: bool = True
    ) -> dict[str, Any] | None:
        """Put a person into a group; announce=True posts the new_chat_members service message."""
        chat = self._group(chat_id)
        user = self._person(user_id)
        old_status = chat.status_of(user_id)
        chat.members[user_id] = status
        self._chat_member_updates(chat, user_id, user_id, old_status)
        if announce and chat.type != "channel":
            return self._post_service(chat, user, {"new_chat_members": [user.to_api()]})
        return None

    def remove_member(self, chat_id: int, user_id: int, *, announce: bool = True) -> None:
        """Take a person out of a group (status "left")."""
        chat = self._group(chat_id)
        user = self._person(user_id)
        old_status = chat.status_of(user_id)
        chat.members[user_id] = "left"
        self._chat_member_updates(chat, user_id, user_id, old_status)
        if announce and chat.type != "channel":
            self._post_service(chat, user, {"left_chat_member": user.to_api()})

    def _chat_member_updates(self, chat: Chat, user_id: int, actor_id: int, old: str) -> None:
        # chat_member updates go only to admin bots that asked for them in allowed_updates
        for bot in self._bots_in(chat):
            if chat.status_of(bot.user.id) in ("creator", "administrator"):
                account = self._account(user_id)
                actor = self._account(actor_id)
                assert account is not None and actor is not None
                old_member: dict[str, Any] = {"status": old, "user": account.to_api()}
                if old == "kicked":
                    old_member["until_date"] = 0
                self._enqueue(
                    bot,
                    "chat_member",
                    {
                        "chat": chat.to_api(),
                        "from": actor.to_api(),
                        "date": self.now(),
                        "old_chat_member": old_member,
                        "new_chat_member": self._member_api(chat, user_id),
                    },
                )

    def add_bot_to_group(
        self, token: str, chat_id: int, by_user_id: int, *, admin: bool = False
    ) -> dict[str, Any]:
        """Add a bot to a group as by_user_id would: my_chat_member plus new_chat_members."""
        bot = self._bot(token)
        chat = self._group(chat_id)
        by = self._person(by_user_id)
        if chat.type == "channel":
            admin = True  # bots can only be administrators of channels
        old = self._member_api(chat, bot.user.id)
        chat.members[bot.user.id] = "administrator" if admin else "member"
        result: dict[str, Any] = {
            "my_chat_member_update_id": self._member_update(bot, chat, by.id, old),
            "message": None,
            "message_update_id": None,
        }
        if chat.type != "channel":
            message = self._new_message(
                chat, by, {"new_chat_members": [bot.user.to_api()]}, bot_id=None, from_bot=False
            )
            ids = self._fan_out(chat, message.api, "message")
            result["message"] = message.api
            result["message_update_id"] = ids.get(token)
        return result

    def promote(self, chat_id: int, user_id: int, status: str = "administrator") -> None:
        """Change a member's status (e.g. make a bot or person an administrator)."""
        chat = self._group(chat_id)
        old = chat.status_of(user_id)
        bot = self.bots_by_id.get(user_id)
        old_member = self._member_api(chat, user_id) if bot else None
        chat.members[user_id] = status
        if bot is not None and old_member is not None:
            creator = next((u for u, s in chat.members.items() if s == "creator"), user_id)
            self._member_update(bot, chat, creator, old_member)
        else:
            self._chat_member_updates(chat, user_id, user_id, old)

    def migrate_to_supergroup(self, chat_id: int) -> int:
        """Upgrade a group to a supergroup; return the new id. Both service messages are sent."""
        old = self._group(chat_id)
        if old.type != "group" or old.migrated_to is not None:
            raise EmulatorError(f"chat {chat_id} is not a group that can be upgraded")
        new_id = -next(self._supergroup_ids)
        new = Chat(new_id, "supergroup", title=old.title, migrated_from=old.id)
        new.members = dict(old.members)
        self.chats[new_id] = new
        actor_id = next((u for u, s in old.members.items() if s == "creator"), None)
        if actor_id is None:
            actor_id = next((u for u in old.members if u in self.users), None)
        actor = self.users.get(actor_id) if actor_id is not None else None
        self._post_service(old, actor, {"migrate_to_chat_id": new_id})
        old.migrated_to = new_id
        self._post_service(new, actor, {"migrate_from_chat_id": old.id})
        return new_id

    # -- people acting --------------------------------------------------------------------

    def send_text(
        self,
        token: str,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        *,
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """A person sends text (chat_id None: their private chat with the bot); ``entities``
        are the formatting their client sends along (bold, italic, text_link, ...).

        Returns (update_id for this bot or None if the bot does not see it, message).
        """
        if not text:
            raise EmulatorError("Telegram clients do not send empty messages")
        content: dict[str, Any] = {"text": text}
        entities = sorted(
            [*bot_command_entities(text), *(entities or [])], key=lambda e: e["offset"]
        )
        if entities:
            content["entities"] = entities
        return self._person_posts(token, user_id, chat_id, content, reply_to)

    def send_document(
        self,
        token: str,
        user_id: int,
        filename: str,
        data: bytes,
        chat_id: int | None = None,
        caption: str | None = None,
        mime_type: str | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """A person sends a file."""
        mime = mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file = self._store_file("document", data, filename, mime)
        content: dict[str, Any] = {"document": self._file_api(file)}
        if caption:
            content["caption"] = caption
        return self._person_posts(token, user_id, chat_id, content, None)

    def send_photo(
        self,
        token: str,
        user_id: int,
        data: bytes,
        chat_id: int | None = None,
        caption: str | None = None,
        caption_entities: list[dict[str, Any]] | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """A person sends a picture (with an optional caption and its formatting)."""
        file = self._store_file("photo", data, None, "image/jpeg")
        content: dict[str, Any] = {"photo": [self._file_api(file)]}
        if caption:
            content["caption"] = caption
            if caption_entities:
                content["caption_entities"] = caption_entities
        return self._person_posts(token, user_id, chat_id, content, None)

    def edit_text(
        self, token: str, user_id: int, chat_id: int, message_id: int, text: str
    ) -> tuple[int | None, dict[str, Any]]:
        """A person edits one of their text messages (an edited_message update)."""
        bot = self._bot(token)
        chat = self._chat(chat_id)
        message = chat.messages.get(message_id)
        if message is None or message.deleted or message.sender_id != user_id:
            raise EmulatorError(f"user {user_id} has no message {message_id} in chat {chat_id}")
        if "text" not in message.api:
            raise EmulatorError("only text messages can be edited this way")
        api = dict(message.api)
        api["text"] = text
        entities = bot_command_entities(text)
        if entities:
            api["entities"] = entities
        else:
            api.pop("entities", None)
        api["edit_date"] = self.now()
        message.api = api
        message.edits += 1
        kind = "edited_channel_post" if chat.type == "channel" else "edited_message"
        if chat.type == "private":
            return self._enqueue(bot, kind, api), api
        return self._fan_out(chat, api, kind).get(token), api

    def press(
        self,
        token: str,
        user_id: int,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        forge: bool = False,
    ) -> CallbackPress:
        """A person presses an inline button; forge=True skips the "is it really there" checks."""
        bot = self._bot(token)
        user = self._person(user_id)
        chat = self._chat(chat_id)
        message = chat.messages.get(message_id)
        if not forge:
            self._check_press(bot, user, chat, message, message_id, callback_data)
        number = next(self._query_numbers)
        query_id = f"{bot.user.id % 1_000_000:06d}{number:012d}"
        if message is not None and not message.deleted and self._visible(bot, chat, message):
            shown = message.api
        else:
            shown = {"chat": chat.to_api(), "message_id": message_id, "date": 0}
        payload = {
            "id": query_id,
            "from": user.to_api(),
            "message": shown,
            "chat_instance": str(abs(chat.id * 1_000_003 + bot.user.id) % 10**18),
            "data": callback_data,
        }
        record = CallbackRecord(query_id, user_id, chat_id, message_id, callback_data)
        bot.callbacks[query_id] = record
        self._queries[query_id] = record
        update_id = self._enqueue(bot, "callback_query", payload)
        return CallbackPress(update_id, query_id, payload).bind(self)

    def _check_press(
        self,
        bot: BotState,
        user: User,
        chat: Chat,
        message: StoredMessage | None,
        message_id: int,
        data: str,
    ) -> None:
        if message is None or message.deleted:
            raise EmulatorError(f"no message {message_id} in chat {chat.id}")
        if chat.type == "private":
            if chat.id != user.id or message.bot_id != bot.user.id:
                raise EmulatorError(f"user {user.id} can't see message {message_id}")
        elif not chat.is_member(user.id):
            raise EmulatorError(f"user {user.id} is not in chat {chat.id}")
        if message.sender_id != bot.user.id:
            raise EmulatorError(f"message {message_id} was not sent by this bot")
        rows = message.api.get("reply_markup", {}).get("inline_keyboard", [])
        if not any(button.get("callback_data") == data for row in rows for button in row):
            raise EmulatorError(f"message {message_id} has no button with callback_data {data!r}")

    # -- load for benchmarks ----------------------------------------------------------------

    def send_many(self, token: str, messages: list[dict[str, Any]]) -> list[int | None]:
        """Inject many texts at once: each {user_id, text, chat_id?}; returns update ids."""
        return [
            self.send_text(token, m["user_id"], m["text"], m.get("chat_id"))[0] for m in messages
        ]

    def press_many(self, token: str, presses: list[dict[str, Any]]) -> list[str]:
        """Inject many button presses at once: each {user_id, chat_id, message_id,
        callback_data, forge?}; returns the query ids."""
        return [
            self.press(
                token,
                p["user_id"],
                p["chat_id"],
                p["message_id"],
                p["callback_data"],
                forge=p.get("forge", False),
            ).query_id
            for p in presses
        ]

    def answer_report(self, query_ids: list[str]) -> dict[str, Any]:
        """How many of these presses were answered, and each one's seconds to its answer."""
        latencies = []
        for query_id in query_ids:
            record = self._queries.get(query_id)
            if record is not None and record.answered_at is not None:
                latencies.append(record.answered_at - record.pressed_at)
        last = max(
            (self._queries[q].answered_at or 0.0 for q in query_ids if q in self._queries),
            default=0.0,
        )
        first = min(
            (self._queries[q].pressed_at for q in query_ids if q in self._queries), default=0.0
        )
        return {
            "answered": len(latencies),
            "latencies": latencies,
            "span": max(0.0, last - first) if latencies else 0.0,
        }

    # a deadline per wait is the API tests want, hence the timeout parameter
    async def wait_for_answer(self, query_id: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for the bot's answerCallbackQuery: {text, show_alert, url, cache_time}."""
        record = self._queries.get(query_id)
        if record is None:
            raise EmulatorError(f"unknown callback query {query_id!r}")
        if record.answer is not None:
            return record.answer
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        record.waiters.append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"callback query {query_id} not answered in {timeout} s") from None
        finally:
            record.waiters.remove(future)

    def callback_answer(self, query_id: str) -> dict[str, Any] | None:
        """The answer a callback query got, or None while unanswered."""
        record = self._queries.get(query_id)
        if record is None:
            raise EmulatorError(f"unknown callback query {query_id!r}")
        return record.answer

    def block_bot(self, token: str, user_id: int) -> int | None:
        """A person blocks the bot: my_chat_member (kicked); later sends get 403."""
        return self._set_blocked(token, user_id, blocked=True)

    def unblock_bot(self, token: str, user_id: int) -> int | None:
        """A person unblocks the bot: my_chat_member (member)."""
        return self._set_blocked(token, user_id, blocked=False)

    def _set_blocked(self, token: str, user_id: int, *, blocked: bool) -> int | None:
        bot = self._bot(token)
        user = self._person(user_id)
        chat = self.chats[user_id]
        if (bot.user.id in chat.blocked) == blocked:
            raise EmulatorError(f"user {user_id} has {'already' if blocked else 'not'} blocked")
        member = {"status": "member", "user": bot.user.to_api()}
        kicked = {"status": "kicked", "user": bot.user.to_api(), "until_date": 0}
        if blocked:
            chat.blocked.add(bot.user.id)
        else:
            chat.blocked.discard(bot.user.id)
            chat.started.add(bot.user.id)
        payload = {
            "chat": chat.to_api(),
            "from": user.to_api(),
            "date": self.now(),
            "old_chat_member": member if blocked else kicked,
            "new_chat_member": kicked if blocked else member,
        }
        return self._enqueue(bot, "my_chat_member", payload)

    def channel_post(
        self, token: str, chat_id: int, text: str
    ) -> tuple[int | None, dict[str, Any]]:
        """Post text in a channel; admin bots get a channel_post update."""
        chat = self._chat(chat_id)
        if chat.type != "channel":
            raise EmulatorError(f"chat {chat_id} is not a channel")
        content: dict[str, Any] = {"text": text}
        entities = bot_command_entities(text)
        if entities:
            content["entities"] = entities
        message = self._new_message(chat, None, content, bot_id=None, from_bot=False)
        return self._fan_out(chat, message.api, "channel_post").get(token), message.api

    def _person_posts(
        self,
        token: str,
        user_id: int,
        chat_id: int | None,
        content: dict[str, Any],
        reply_to: int | None,
    ) -> tuple[int | None, dict[str, Any]]:
        bot = self._bot(token)
        user = self._person(user_id)
        if chat_id is None or chat_id == user_id:
            chat = self.chats[user_id]
            if bot.user.id in chat.blocked:
                raise EmulatorError(f"user {user_id} blocked the bot: unblock_bot first")
            chat.started.add(bot.user.id)
        else:
            chat = self._chat(chat_id)
            if chat.migrated_to is not None:
                raise EmulatorError(f"group {chat_id} was migrated to {chat.migrated_to}")
            if chat.type == "channel" or not chat.is_member(user_id):
                raise EmulatorError(f"user {user_id} can't write in chat {chat_id}")
        if reply_to is not None:
            original = chat.messages.get(reply_to)
            if original is None:
                raise EmulatorError(f"no message {reply_to} to reply to")
            quoted = dict(original.api)
            quoted.pop("reply_to_message", None)
            content["reply_to_message"] = quoted
        if chat.type == "private":
            message = self._new_message(chat, user, content, bot_id=bot.user.id, from_bot=False)
            return self._enqueue(bot, "message", message.api), message.api
        message = self._new_message(chat, user, content, bot_id=None, from_bot=False)
        return self._fan_out(chat, message.api, "message").get(token), message.api

    def _post_service(
        self, chat: Chat, actor: User | None, content: dict[str, Any]
    ) -> dict[str, Any]:
        message = self._new_message(chat, actor, content, bot_id=None, from_bot=False)
        self._fan_out(chat, message.api, "message")
        return message.api

    def _bots_in(self, chat: Chat) -> list[BotState]:
        return [
            bot
            for user_id in chat.members
            if (bot := self.bots_by_id.get(user_id)) is not None and chat.is_member(user_id)
        ]

    def _fan_out(self, chat: Chat, api: dict[str, Any], kind: str) -> dict[str, int | None]:
        """Queue a group or channel message for every bot that sees it; return ids by token."""
        ids: dict[str, int | None] = {}
        sender = api.get("from", {}).get("id")
        for bot in self._bots_in(chat):
            if bot.user.id != sender and self._sees(bot, chat, api):
                ids[bot.token] = self._enqueue(bot, kind, api)
        return ids

    @staticmethod
    def _sees(bot: BotState, chat: Chat, api: dict[str, Any]) -> bool:
        """Telegram's privacy mode: which group messages a bot receives."""
        status = chat.status_of(bot.user.id)
        if chat.type == "channel":
            return status in ("creator", "administrator")
        if not bot.privacy_mode or status in ("creator", "administrator"):
            return True
        if _SERVICE_KEYS.intersection(api):
            return True
        reply = api.get("reply_to_message")
        if reply is not None and reply.get("from", {}).get("id") == bot.user.id:
            return True
        text = api.get("text") or api.get("caption") or ""
        if text.startswith("/"):
            command = text.split(None, 1)[0]
            if "@" in command:
                return command.split("@", 1)[1].lower() == (bot.user.username or "").lower()
            return True
        return False

    # -- reading what the bot did ---------------------------------------------------------

    def _new_message(
        self, chat: Chat, sender: User | None, content: dict[str, Any], **kwargs: Any
    ) -> StoredMessage:
        message = super()._new_message(chat, sender, content, **kwargs)
        if message.from_bot:
            self._bot_log.append(message)
        return message

    def messages(
        self, chat_id: int, *, token: str | None = None, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        """The bots' messages in a chat, oldest first, in their current state."""
        chat = self._chat(chat_id)
        bot_id = self._bot(token).user.id if token else None
        return [
            self._record(message)
            for message in chat.messages.values()
            if message.from_bot
            and (bot_id is None or message.bot_id == bot_id)
            and (include_deleted or not message.deleted)
        ]

    def all_bot_messages(
        self, since_seq: int = 0, *, token: str | None = None
    ) -> list[dict[str, Any]]:
        """Every bot message created after since_seq (see `seq`), in order, any chat."""
        bot_id = self._bot(token).user.id if token else None
        start = bisect.bisect_right(self._bot_log, since_seq, key=lambda m: m.seq)
        return [
            self._record(message)
            for message in self._bot_log[start:]
            if bot_id is None or message.bot_id == bot_id
        ]

    async def wait_for_message(
        self,
        chat_id: int,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline per wait is the API
        since_seq: int = 0,
        *,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Wait for a bot message in the chat, new or changed after since_seq, that matches.

        The first such change (lowest last_seq) is returned; deleted messages never match.
        """
        chat = self._chat(chat_id)
        bot_id = self._bot(token).user.id if token else None

        def matches(message: StoredMessage) -> bool:
            if not message.from_bot or message.deleted or message.last_seq <= since_seq:
                return False
            if bot_id is not None and message.bot_id != bot_id:
                return False
            return predicate is None or bool(predicate(self._record(message)))

        found = [m for m in chat.messages.values() if matches(m)]
        if found:
            return self._record(min(found, key=lambda m: m.last_seq))
        future: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        waiter = (chat.id, matches, future)
        self._message_waiters.append(waiter)
        try:
            message = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no matching bot message in chat {chat_id} within {timeout} s"
            ) from None
        finally:
            self._message_waiters.remove(waiter)
        return self._record(message)

    def history(self, chat_id: int, *, token: str | None = None) -> list[dict[str, Any]]:
        """Every message in a chat (people's and bots'), as Bot API Message objects."""
        chat = self._chat(chat_id)
        bot_id = self._bot(token).user.id if token else None
        return [
            message.api
            for message in chat.messages.values()
            if not message.deleted and (bot_id is None or message.bot_id in (None, bot_id))
        ]

    def webhook_deliveries(self, token: str) -> list[dict[str, Any]]:
        """Every webhook delivery attempt: update_id, url, status, ok, error, attempt."""
        return list(self._bot(token).deliveries)

    def commands(
        self, token: str, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, Any]]:
        """The commands a bot set for a scope and language."""
        bot = self._bot(token)
        key = (self._check_commands_scope({"scope": scope} if scope else {}), language_code)
        return list(bot.commands.get(key, []))

    def chat_info(self, chat_id: int) -> dict[str, Any]:
        """A chat's Bot API form plus members and migration state."""
        chat = self._chat(chat_id)
        return {
            **chat.to_api(),
            "members": {str(k): v for k, v in chat.members.items()},
            "migrated_to": chat.migrated_to,
            "migrated_from": chat.migrated_from,
        }

    def chat_action(self, token: str, chat_id: int) -> str | None:
        """The last sendChatAction action the bot sent to a chat."""
        return self._bot(token).chat_actions.get(chat_id)

    # -- runtime settings -----------------------------------------------------------------

    def set_webhook_targets(self, token: str, urls: list[str] | None) -> None:
        """Deliver this bot's webhook updates round-robin over several URLs (None: reset).

        Takes effect while a webhook is set; setWebhook calls don't change the targets, so
        several instances may each call setWebhook at start-up.
        """
        bot = self._bot(token)
        bot.webhook_targets = list(urls) if urls else None
        dispatcher = self._dispatchers.get(token)
        if dispatcher is not None:
            dispatcher.wake()

    def redeliver(self, token: str, update_id: int) -> None:
        """Queue an update again with the same update_id, as Telegram does after a webhook
        timeout or a lost answer: the bot must handle each update id once."""
        bot = self._bot(token)
        if bot.webhook is None:
            # with getUpdates an unconfirmed update comes back by itself, a confirmed one never
            raise EmulatorError("redeliver needs a webhook; getUpdates repeats unconfirmed ones")
        original = bot.recent.get(update_id)
        if original is None:
            raise EmulatorError(f"update {update_id} is unknown or too old")
        bot.queue.append(QueuedUpdate(update_id, original.kind, original.payload))
        self._wake_webhook(bot)
        self._notify()

    def reset_rate_limits(self) -> None:
        """Refill every rate-limit bucket."""
        self.rate_limiter.reset()

    def reset_stats(self) -> None:
        """Zero all counters."""
        self.stats = type(self.stats)()

    # -- webhook plumbing and shutdown ----------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=100)
            )
        return self._http

    def _webhook_changed(self, bot: BotState) -> None:
        dispatcher = self._dispatchers.get(bot.token)
        if bot.webhook is not None:
            if dispatcher is None:
                dispatcher = WebhookDispatcher(self, bot)
                self._dispatchers[bot.token] = dispatcher
                dispatcher.start()
            dispatcher.wake()
        elif dispatcher is not None:
            del self._dispatchers[bot.token]
            asyncio.get_running_loop().create_task(dispatcher.stop())

    def _wake_webhook(self, bot: BotState) -> None:
        if bot.webhook is not None:
            dispatcher = self._dispatchers.get(bot.token)
            if dispatcher is not None:
                dispatcher.wake()

    def interrupt(self) -> None:
        """Release held requests (long polls answer [], stalled faults answer at once)."""
        for bot in self.bots.values():
            if bot.poller is not None and not bot.poller.done():
                bot.poller.set_result("closed")
        self._closing.set()
        self._closing = asyncio.Event()

    async def close(self) -> None:
        """Stop webhook delivery, release held requests and close the HTTP client."""
        self.interrupt()
        dispatchers = list(self._dispatchers.values())
        self._dispatchers.clear()
        for dispatcher in dispatchers:
            await dispatcher.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- lookups for the injection API ----------------------------------------------------

    def _person(self, user_id: int) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise EmulatorError(f"no user {user_id}")
        return user

    def _chat(self, chat_id: int) -> Chat:
        chat = self.chats.get(chat_id)
        if chat is None:
            raise EmulatorError(f"no chat {chat_id}")
        return chat

    def _group(self, chat_id: int) -> Chat:
        chat = self._chat(chat_id)
        if chat.type == "private":
            raise EmulatorError(f"chat {chat_id} is a private chat")
        return chat
