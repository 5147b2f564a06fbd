"""The emulator's state and the helpers both the Bot API and the injection API build on."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.emulator.errors import ApiError, EmulatorError, bad_request, forbidden
from bot.emulator.limits import Faults, Limits, RateLimiter
from bot.emulator.spec import Spec, load_spec
from bot.emulator.state import (
    BotState,
    Chat,
    FileRecord,
    QueuedUpdate,
    Stats,
    StoredMessage,
    User,
)

T = TypeVar("T")
Listener = Callable[[str, dict[str, Any]], None]

_RECENT_UPDATES = 10_000
_CHAT_WORDS = {"group": "group chat", "supergroup": "supergroup chat", "channel": "channel chat"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EmulatorCore:
    """State plus the shared mechanics: ids, clock, queues, waiting, chat access, files."""

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
        self.spec: Spec = load_spec()
        self.clock = clock or _utc_now
        self.limits = limits or Limits()
        self.rate_limiter = RateLimiter(self.limits)
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._flood_until = time.monotonic() + self.faults.flood_seconds
        self.strict_html = strict_html
        self.webhook_retry_base = webhook_retry_base
        self.webhook_retry_max = webhook_retry_max
        self.webhook_timeout = webhook_timeout
        self.first_update_id = first_update_id
        self.stats = Stats()
        self.bots: dict[str, BotState] = {}
        self.bots_by_id: dict[int, BotState] = {}
        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.files: dict[str, FileRecord] = {}
        self.files_by_path: dict[str, FileRecord] = {}
        self._usernames: dict[str, int] = {}
        self._user_ids = itertools.count(700_000_001)
        self._bot_ids = itertools.count(8_000_000_001)
        self._group_ids = itertools.count(4_000_000_001)
        self._supergroup_ids = itertools.count(1_000_000_000_001)
        self._file_numbers = itertools.count(1)
        self._query_numbers = itertools.count(1)
        self._seq = 0
        self._waiters: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._message_waiters: list[
            tuple[int, Callable[[StoredMessage], bool], asyncio.Future[StoredMessage]]
        ] = []
        self._listeners: list[Listener] = []

    # -- time, ids, sequence --------------------------------------------------------------

    def now(self) -> int:
        """Current Unix time from the injectable clock."""
        return int(self.clock().timestamp())

    @property
    def seq(self) -> int:
        """The latest sequence number given to a bot message change."""
        return self._seq

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- waiting and listening ------------------------------------------------------------

    # a deadline per wait is the API tests want, hence the timeout parameter
    async def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """Wait until predicate() is truthy (checked after every state change); return it."""
        value = predicate()
        if value:
            return value
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout} s") from None
        finally:
            self._waiters.remove(waiter)

    def _notify(self) -> None:
        if not self._waiters:
            return
        for predicate, future in list(self._waiters):
            if future.done():
                continue
            try:
                value = predicate()
            except Exception as exc:  # a broken predicate must fail its test, not the server
                future.set_exception(exc)
                continue
            if value:
                future.set_result(value)

    def add_listener(self, listener: Listener) -> None:
        """Call listener(event, data) on every bot message, edit, delete, answer and action."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling a listener."""
        self._listeners.remove(listener)

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            listener(event, data)

    # -- updates --------------------------------------------------------------------------

    def _enqueue(self, bot: BotState, kind: str, payload: dict[str, Any]) -> int | None:
        if kind not in bot.allowed_updates:
            return None
        update_id = bot.next_update_id
        bot.next_update_id += 1
        update = QueuedUpdate(update_id, kind, {"update_id": update_id, kind: payload})
        bot.queue.append(update)
        bot.recent[update_id] = update
        if len(bot.recent) > _RECENT_UPDATES:
            del bot.recent[next(iter(bot.recent))]
        poller = bot.poller
        if poller is not None and not poller.done():
            poller.set_result("update")
        self._wake_webhook(bot)
        self._notify()
        return update_id

    def _wake_webhook(self, bot: BotState) -> None:
        """Hook for the webhook dispatcher (set up by the Emulator)."""

    def pending_updates(self, token: str) -> int:
        """Updates queued for a bot and not yet confirmed (polling) or delivered (webhook)."""
        return sum(1 for update in self._bot(token).queue if not update.delivered)

    # -- lookups --------------------------------------------------------------------------

    def _bot(self, token: str) -> BotState:
        bot = self.bots.get(token)
        if bot is None:
            raise EmulatorError(f"no bot with token {token!r}")
        return bot

    def _account(self, user_id: int) -> User | None:
        user = self.users.get(user_id)
        if user is None:
            bot = self.bots_by_id.get(user_id)
            user = bot.user if bot else None
        return user

    def _chat_by_ref(self, chat_id: int | str) -> Chat:
        if isinstance(chat_id, str):
            # only public groups and channels are reachable by @username
            found = self._usernames.get(chat_id[1:].lower()) if chat_id.startswith("@") else None
            chat = self.chats.get(found) if found is not None else None
            if chat is None or chat.type == "private":
                raise bad_request("chat not found")
            return chat
        chat = self.chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _chat_for_bot(self, bot: BotState, chat_id: int | str, *, write: bool = True) -> Chat:
        """Resolve chat_id as Telegram would for this bot, raising its errors."""
        chat = self._chat_by_ref(chat_id)
        bot_id = bot.user.id
        if chat.type == "private":
            if bot_id in chat.blocked and write:
                raise forbidden("bot was blocked by the user")
            if bot_id not in chat.started:
                if write:
                    raise forbidden("bot can't initiate conversation with a user")
                raise bad_request("chat not found")
            return chat
        if chat.migrated_to is not None and write:
            raise bad_request(
                "group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        status = chat.status_of(bot_id)
        words = _CHAT_WORDS[chat.type]
        if status == "kicked":
            raise forbidden(f"bot was kicked from the {words}")
        if status == "left":
            if chat.type == "channel" or not write:
                raise bad_request("chat not found")
            raise forbidden(f"bot is not a member of the {words}")
        if chat.type == "channel" and status not in ("creator", "administrator") and write:
            raise bad_request("need administrator rights in the channel chat")
        return chat

    def _rate_limit(self, bot: BotState, chat: Chat, *, send: bool, paid: bool = False) -> None:
        wait = self.rate_limiter.acquire(bot.user.id, chat.id, chat.type, send=send, paid=paid)
        if wait:
            self.stats.rate_limited += 1
            self.stats.rate_limited_per_chat[chat.id] += 1
            raise ApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})

    # -- messages -------------------------------------------------------------------------

    def _new_message(
        self,
        chat: Chat,
        sender: User | None,
        content: dict[str, Any],
        *,
        bot_id: int | None,
        from_bot: bool,
        html: str | None = None,
        parse_mode: str | None = None,
        file_id: str | None = None,
        markup: dict[str, Any] | None = None,
    ) -> StoredMessage:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        api: dict[str, Any] = {"message_id": message_id}
        if chat.type == "channel":
            api["sender_chat"] = chat.to_api()
        elif sender is not None:
            api["from"] = sender.to_api()
        api["chat"] = chat.to_api()
        api["date"] = self.now()
        api.update(content)
        seq = self._next_seq()
        message = StoredMessage(
            chat_id=chat.id,
            message_id=message_id,
            sender_id=sender.id if sender else None,
            api=api,
            seq=seq,
            last_seq=seq,
            bot_id=bot_id,
            from_bot=from_bot,
            html=html,
            parse_mode=parse_mode,
            file_id=file_id,
            markup=markup,
        )
        chat.messages[message_id] = message
        if from_bot:
            self.stats.messages_sent += 1
            self.stats.messages_per_chat[chat.id] += 1
            self._changed(message, "message")
        return message

    def _changed(self, message: StoredMessage, event: str) -> None:
        """Tell waiters and listeners that a bot message appeared or changed."""
        if event != "message":
            message.last_seq = self._next_seq()
        if self._message_waiters:
            for chat_id, predicate, future in list(self._message_waiters):
                if chat_id == message.chat_id and not future.done():
                    try:
                        matched = predicate(message)
                    except Exception as exc:  # a broken predicate must fail its test only
                        future.set_exception(exc)
                        continue
                    if matched:
                        future.set_result(message)
        if self._listeners:
            self._emit(event, self._record(message))
        self._notify()

    def _record(self, message: StoredMessage) -> dict[str, Any]:
        """The read-API view of a message: current content, plain text and file bytes."""
        api = message.api
        record: dict[str, Any] = {
            "chat_id": message.chat_id,
            "message_id": message.message_id,
            "seq": message.seq,
            "last_seq": message.last_seq,
            "date": api.get("date"),
            "from_bot": message.from_bot,
            "sender_id": message.sender_id,
            "text": api.get("text", api.get("caption")),
            "html": message.html,
            "parse_mode": message.parse_mode,
            "entities": api.get("entities", api.get("caption_entities", [])),
            "caption": api.get("caption"),
            "reply_markup": message.markup,
            "document": None,
            "photo": None,
            "edited": message.edits,
            "deleted": message.deleted,
            "message": api,
        }
        if message.file_id is not None:
            file = self.files.get(message.file_id)
            if file is not None and file.kind == "document":
                record["document"] = {
                    "file_name": file.file_name,
                    "mime_type": file.mime_type,
                    "data": file.data,
                    "file_id": file.file_id,
                }
            elif file is not None and file.kind == "photo":
                record["photo"] = file.data
        return record

    # -- files ----------------------------------------------------------------------------

    def _store_file(
        self,
        kind: str,
        data: bytes,
        file_name: str | None,
        mime_type: str | None,
        *,
        size: tuple[int, int] | None = None,
        url: str | None = None,
    ) -> FileRecord:
        number = next(self._file_numbers)
        folder = "photos" if kind == "photo" else "documents"
        extension = ""
        if file_name and "." in file_name:
            extension = "." + file_name.rsplit(".", 1)[1][:10]
        elif kind == "photo":
            extension = ".jpg"
        record = FileRecord(
            file_id=f"{'AgAC' if kind == 'photo' else 'BQAC'}EmU{number:08d}",
            file_unique_id=f"AQAD{number:06d}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
            kind=kind,
            file_path=f"{folder}/file_{number}{extension}",
            width=size[0] if size else None,
            height=size[1] if size else None,
            url=url,
        )
        self.files[record.file_id] = record
        self.files_by_path[record.file_path] = record
        return record

    def _file_api(self, file: FileRecord) -> dict[str, Any]:
        if file.kind == "photo":
            return {
                "file_id": file.file_id,
                "file_unique_id": file.file_unique_id,
                "file_size": len(file.data),
                "width": file.width or 1,
                "height": file.height or 1,
            }
        out: dict[str, Any] = {"file_id": file.file_id, "file_unique_id": file.file_unique_id}
        if file.file_name:
            out["file_name"] = file.file_name
        if file.mime_type:
            out["mime_type"] = file.mime_type
        out["file_size"] = len(file.data)
        return out

    # -- faults ---------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings and re-seed their random generator."""
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._flood_until = time.monotonic() + faults.flood_seconds

    def _draw_fault(self) -> str | None:
        faults = self.faults
        if faults.flood_seconds > 0 and time.monotonic() < self._flood_until:
            return "flood"
        if faults.error_rate <= 0 and faults.timeout_rate <= 0:
            return None
        roll = self._rng.random()
        if roll < faults.error_rate:
            return "error"
        if roll < faults.error_rate + faults.timeout_rate:
            return "timeout_delivered" if self._rng.random() < 0.5 else "timeout_dropped"
        return None
