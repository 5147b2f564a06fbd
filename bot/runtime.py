"""What the running bot is made of, built once by bot.app, reachable from every handler."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.render import Rendered, Renderer
from bot.services.privacy import PrivacyHook

if TYPE_CHECKING:
    from bot.cards import CardRefresher
    from bot.delivery import OutboxSender
    from bot.scheduler import JobContext, JobRunner
    from models import ScheduledJob

JobHandler = Callable[["JobContext", "ScheduledJob"], Awaitable[None]]
# Called once every delivery of an outbox batch has its outcome (e.g. "broadcast:7"), in a
# transaction of its own; it may run on several instances at once, so it must be idempotent.
BatchHandler = Callable[["JobContext", str], Awaitable[None]]


@dataclass(frozen=True)
class CardRequest:
    """What a card renderer gets: the session, the item, the language and the chat."""

    session: AsyncSession
    runtime: Runtime
    item_id: int
    language: str
    chat_id: int
    now: dt.datetime

    def render(self, template: str, **values: Any) -> Rendered:
        """Render a template in the card's language."""
        return self.runtime.renderer.render(template, self.language, **values)


@dataclass(frozen=True)
class CardKind:
    """A kind of item an organiser can post into a group as a live card (/post)."""

    kind: str  # "poll", "campaign", "petition", "meeting": used in callback data, keep short
    # async (session, organization) -> items that may be posted now (each has .id, .title)
    postable: Callable[[AsyncSession, Any], Awaitable[list[Any]]]
    # async (session, item_id) -> the id of the organisation the item belongs to, or None
    owner: Callable[[AsyncSession, int], Awaitable[int | None]]
    # async (CardRequest) -> the card as it should look now, or None if the item is gone
    render: Callable[[CardRequest], Awaitable[Rendered | None]]
    # template rendering one line naming an item in the /post list (given ``item``)
    label_template: str


@dataclass(frozen=True)
class Audience:
    """People a feature can name as the audience of an announcement (issue: broadcasts)."""

    key: str  # "campaign", "meeting", "petition", "poll"
    variants: tuple[str, ...]  # e.g. ("confirmed", "waitlisted")
    # async (session, organization) -> items to choose from (each has .id, .title)
    items: Callable[[AsyncSession, Any], Awaitable[list[Any]]]
    # (item_id, variant) -> a SELECT of one column: the ids of the members in the audience
    member_ids: Callable[[int, str], Any]
    # template rendering the name of a variant (given ``variant``) for buttons and reports
    label_template: str


@dataclass
class Features:
    """Where each feature plugs in: deep links, /me sections, /help, jobs, flows, privacy."""

    # "/start <prefix>_<arg>" → async fn(update, context, arg)
    deep_links: dict[str, Callable[..., Awaitable[None]]] = field(default_factory=dict)
    # async fn(context, member) -> rendered HTML fragment (or "") for /me
    me_sections: list[Callable[..., Awaitable[str]]] = field(default_factory=list)
    # templates rendered by /help, given is_organizer / is_admin
    help_templates: list[str] = field(default_factory=list)
    jobs: dict[str, JobHandler] = field(default_factory=dict)
    # flow name → async fn(update, context, state) for a person's free text inside a flow
    flows: dict[str, Callable[..., Awaitable[None]]] = field(default_factory=dict)
    # flow name → async fn(update, context, state) for a photo or file sent inside a flow
    media_flows: dict[str, Callable[..., Awaitable[None]]] = field(default_factory=dict)
    privacy: list[PrivacyHook] = field(default_factory=list)
    # templates of "command - description" lines for Telegram's command menu
    command_menus: list[str] = field(default_factory=list)
    cards: dict[str, CardKind] = field(default_factory=dict)
    audiences: dict[str, Audience] = field(default_factory=dict)
    # outbox batch prefix ("broadcast" for "broadcast:7") → what to do when a batch is done
    batch_done: dict[str, BatchHandler] = field(default_factory=dict)

    def add_job(self, kind: str, handler: JobHandler) -> None:
        """Register what runs when a job of ``kind`` is due."""
        if kind in self.jobs:
            raise ValueError(f"job kind {kind!r} registered twice")
        self.jobs[kind] = handler


@dataclass
class Runtime:
    """The application's resources; one per running bot (tests build several)."""

    config: Config
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    renderer: Renderer
    features: Features = field(default_factory=Features)
    instance_id: str = field(default_factory=lambda: "i-" + secrets.token_hex(4))
    sender: OutboxSender | None = None
    scheduler: JobRunner | None = None
    cards: CardRefresher | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def now(self) -> dt.datetime:
        """The current time from the injected clock."""
        return self.clock.now()

    def wake_sender(self) -> None:
        """Tell the outbox sender there is something new to send."""
        if self.sender is not None:
            self.sender.wake()
