"""The emulator's world: bots, users, chats, messages, update queues, files and counters."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Updates Telegram sends when allowed_updates is empty or was never given.
DEFAULT_UPDATE_KINDS = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)


@dataclass
class User:
    """A Telegram account, person or bot."""

    id: int
    is_bot: bool
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def to_api(self) -> dict[str, Any]:
        """Return the Bot API `User` object."""
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            out["last_name"] = self.last_name
        if self.username:
            out["username"] = self.username
        if self.language_code and not self.is_bot:
            out["language_code"] = self.language_code
        return out


@dataclass
class Chat:
    """A private chat, group, supergroup or channel, with its members and messages."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    # user or bot id -> "creator" | "administrator" | "member" | "left" | "kicked"
    members: dict[int, str] = field(default_factory=dict)
    migrated_to: int | None = None
    migrated_from: int | None = None
    next_message_id: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    # private chats only: bots the user has written to, and bots the user blocked
    started: set[int] = field(default_factory=set)
    blocked: set[int] = field(default_factory=set)
    _api: dict[str, Any] | None = field(default=None, repr=False)

    def to_api(self) -> dict[str, Any]:
        """Return the Bot API `Chat` object (cached: never mutate it)."""
        if self._api is None:
            out: dict[str, Any] = {"id": self.id}
            if self.type == "private":
                out["first_name"] = self.first_name or ""
                if self.last_name:
                    out["last_name"] = self.last_name
            else:
                out["title"] = self.title or ""
            if self.username:
                out["username"] = self.username
            out["type"] = self.type
            self._api = out
        return self._api

    def status_of(self, user_id: int) -> str:
        """Return a member's status; people who were never in the chat have "left"."""
        return self.members.get(user_id, "left")

    def is_member(self, user_id: int) -> bool:
        """Whether the user or bot is currently in the chat."""
        return self.members.get(user_id, "left") in ("creator", "administrator", "member")


@dataclass
class StoredMessage:
    """A message as the emulator keeps it; `api` is its current Bot API form, never mutated."""

    chat_id: int
    message_id: int
    sender_id: int | None
    api: dict[str, Any]
    seq: int
    last_seq: int
    # the bot that sent it, or for a person's message in a private chat the bot it went to
    bot_id: int | None = None
    from_bot: bool = False
    html: str | None = None
    parse_mode: str | None = None
    file_id: str | None = None
    # the reply_markup as the bot sent it (reply keyboards too, which `api` never shows)
    markup: dict[str, Any] | None = None
    edits: int = 0
    deleted: bool = False


@dataclass
class QueuedUpdate:
    """One update waiting for getUpdates or for webhook delivery."""

    update_id: int
    kind: str
    payload: dict[str, Any]
    delivered: bool = False
    in_flight: bool = False
    attempts: int = 0
    retry_at: float = 0.0
    # index of the webhook target of the first attempt; retries go round from there
    target: int = -1


@dataclass
class CallbackRecord:
    """A callback query and, once the bot answered it, the answer."""

    query_id: str
    user_id: int
    chat_id: int | None
    message_id: int | None
    data: str | None
    answered: bool = False
    answer: dict[str, Any] | None = None
    waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    # time.monotonic() when pressed and when answered, for latency figures in benchmarks
    pressed_at: float = field(default_factory=time.monotonic)
    answered_at: float | None = None


@dataclass
class FileRecord:
    """An uploaded or sent file."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_name: str | None
    mime_type: str | None
    kind: str
    file_path: str
    width: int | None = None
    height: int | None = None
    url: str | None = None


@dataclass
class WebhookConfig:
    """What setWebhook set for a bot."""

    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class BotState:
    """One bot: its account, its update queue and what it configured."""

    token: str
    user: User
    privacy_mode: bool = True
    queue: deque[QueuedUpdate] = field(default_factory=deque)
    next_update_id: int = 1
    allowed_updates: frozenset[str] = DEFAULT_UPDATE_KINDS
    poller: asyncio.Future[str] | None = None
    webhook: WebhookConfig | None = None
    webhook_targets: list[str] | None = None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    commands: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    menu_buttons: dict[int | None, dict[str, Any]] = field(default_factory=dict)
    callbacks: dict[str, CallbackRecord] = field(default_factory=dict)
    chat_actions: dict[int, str] = field(default_factory=dict)
    # the latest updates by id, so a test can have one delivered again
    recent: dict[int, QueuedUpdate] = field(default_factory=dict)


@dataclass
class Stats:
    """Counters for tests and benchmarks; `as_dict()` gives a JSON-able snapshot."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    rate_limited_per_chat: Counter[int] = field(default_factory=Counter)
    messages_sent: int = 0
    messages_per_chat: Counter[int] = field(default_factory=Counter)
    paid_messages: int = 0
    edits: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    webhook_deliveries: int = 0
    webhook_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-able copy (chat ids as string keys, as JSON needs)."""
        return {
            "requests": dict(self.requests),
            "errors": {str(k): v for k, v in self.errors.items()},
            "rate_limited": self.rate_limited,
            "rate_limited_per_chat": {str(k): v for k, v in self.rate_limited_per_chat.items()},
            "messages_sent": self.messages_sent,
            "messages_per_chat": {str(k): v for k, v in self.messages_per_chat.items()},
            "paid_messages": self.paid_messages,
            "edits": self.edits,
            "faults": dict(self.faults),
            "webhook_deliveries": self.webhook_deliveries,
            "webhook_failures": self.webhook_failures,
        }
