"""moim against the local Bot API emulator, in one process: for the sandbox, tests and benchmarks.

The bot is the real application (handlers, database, rate limiter, outbox sender), talking to
the emulator over real HTTP on 127.0.0.1 through PTB's ``base_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from bot.app import BuildOptions, build_application
from bot.clock import Clock
from bot.config import Config
from bot.context import MoimApplication
from bot.db import transaction
from bot.emulator.emulator import Emulator
from bot.emulator.limits import Faults, Limits
from bot.emulator.server import EmulatorServer
from bot.services import outbox

log = logging.getLogger(__name__)
BOT_TOKEN = "7000000001:LOCAL-moim-emulated-bot-token"
BOT_USERNAME = "moim_bot"


@dataclass
class LocalOptions:
    """How the local setup behaves."""

    clock: Clock | None = None
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    run_scheduler: bool = True  # the APScheduler tick; tests call run_due_jobs() instead
    run_sender: bool = True
    poll_timeout: int = 10


class LocalTelegram:
    """The emulator server plus one moim bot polling it."""

    def __init__(self, config: Config, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self.emulator = Emulator(
            clock=self._emulator_clock(), limits=self.options.limits, faults=self.options.faults
        )
        self.server = EmulatorServer(self.emulator)
        self.base_config = config
        self.application: MoimApplication | None = None
        self.token = BOT_TOKEN

    def _emulator_clock(self):
        clock = self.options.clock
        return clock.now if clock is not None else None

    @property
    def runtime(self):
        """The bot's runtime (database, clock, renderer, sender, scheduler)."""
        return self.application.runtime

    async def start(self) -> None:
        """Start the emulator, then the bot, and begin long polling."""
        await self.server.start()
        self.emulator.create_bot(self.token, BOT_USERNAME, first_name="모임")
        config = self.base_config.replace(
            telegram={"token": self.token, "base_url": self.server.base_url}
        )
        self.application = build_application(
            config,
            BuildOptions(
                clock=self.options.clock,
                start_scheduler=self.options.run_scheduler,
                start_sender=self.options.run_sender,
            ),
        )
        await self.application.initialize()
        # post_init/post_shutdown run by themselves only inside run_polling().
        await self.application.post_init(self.application)
        await self.application.start()
        await self.application.updater.start_polling(
            poll_interval=0.0,
            timeout=self.options.poll_timeout,
            allowed_updates=[
                "message",
                "edited_message",
                "callback_query",
                "my_chat_member",
                "channel_post",
            ],
        )

    async def stop(self) -> None:
        """Stop polling, the bot and the emulator."""
        application = self.application
        if application is not None:
            # Release the pending long poll first so the updater stops at once.
            self.emulator.interrupt()
            with contextlib.suppress(Exception):
                if application.updater.running:
                    await application.updater.stop()
            with contextlib.suppress(Exception):
                if application.running:
                    await application.stop()
            await application.shutdown()
            await application.post_shutdown(application)
        await self.server.stop()
        await self.emulator.close()

    async def __aenter__(self) -> LocalTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def settle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until every injected update is handled and nothing due is left in the outbox."""
        async with asyncio.timeout(timeout):
            while True:
                await self._updates_handled()
                # Card edits are paced per chat in real time; here they are shown at once.
                await self.runtime.cards.refresh_due(force=True)
                if await self._outbox_due() == 0:
                    await self._updates_handled()
                    if await self._outbox_due() == 0:
                        return
                if not self.options.run_sender:
                    await self.runtime.sender.drain()
                else:
                    self.runtime.wake_sender()
                    await asyncio.sleep(0.005)

    async def _updates_handled(self) -> None:
        application = self.application
        processor = application.update_processor
        while True:
            # Handled means: fetched (confirmed by the next getUpdates), queued, processed.
            if self.emulator.pending_updates(self.token) == 0:
                await application.update_queue.join()
                await processor.wait_idle()
                if self.emulator.pending_updates(self.token) == 0:
                    return
            await asyncio.sleep(0.002)

    async def _outbox_due(self) -> int:
        runtime = self.runtime
        async with transaction(runtime.sessions) as session:
            return await outbox.pending_count(session, now=runtime.now())

    async def run_due_jobs(self) -> int:
        """Run every due scheduled job now (tests move the clock, then call this)."""
        count = await self.runtime.scheduler.run_due()
        await self.settle()
        return count

    def stats(self) -> dict[str, Any]:
        """The emulator's counters."""
        return self.emulator.stats.as_dict()
