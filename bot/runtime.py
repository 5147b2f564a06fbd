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
from bot.render import Renderer
from bot.services.privacy import PrivacyHook

if TYPE_CHECKING:
    from bot.delivery import OutboxSender
    from bot.scheduler import JobContext, JobRunner
    from models import ScheduledJob

JobHandler = Callable[["JobContext", "ScheduledJob"], Awaitable[None]]


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
    privacy: list[PrivacyHook] = field(default_factory=list)
    # templates of "command - description" lines for Telegram's command menu
    command_menus: list[str] = field(default_factory=list)

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
    extras: dict[str, Any] = field(default_factory=dict)

    def now(self) -> dt.datetime:
        """The current time from the injected clock."""
        return self.clock.now()

    def wake_sender(self) -> None:
        """Tell the outbox sender there is something new to send."""
        if self.sender is not None:
            self.sender.wake()
