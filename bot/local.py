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
from bot.db import read_retrying_once
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
        return await read_retrying_once(
            runtime.sessions, lambda session: outbox.pending_count(session, now=runtime.now())
        )

    async def run_due_jobs(self) -> int:
        """Run every due scheduled job now (tests move the clock, then call this)."""
        count = await self.runtime.scheduler.run_due()
        await self.settle()
        return count

    def stats(self) -> dict[str, Any]:
        """The emulator's counters."""
        return self.emulator.stats.as_dict()


WEBHOOK_SECRET = "local-cluster-webhook-secret"


@dataclass
class Instance:
    """One moim instance of a cluster: its application and its webhook server."""

    application: MoimApplication
    server: Any
    url: str


class LocalCluster:
    """Several moim instances in webhook mode sharing one database, behind the emulator,
    which delivers updates round-robin over them (as a load balancer would)."""

    def __init__(
        self, config: Config, instances: int = 3, options: LocalOptions | None = None
    ) -> None:
        self.options = options or LocalOptions()
        self.emulator = Emulator(
            clock=self.options.clock.now if self.options.clock else None,
            limits=self.options.limits,
            faults=self.options.faults,
        )
        self.server = EmulatorServer(self.emulator)
        self.base_config = config
        self.count = instances
        self.instances: list[Instance] = []
        self.token = BOT_TOKEN

    async def start(self) -> None:
        """Start the emulator and every instance, then point the webhook at all of them."""
        from bot.emulator.server import LocalServer
        from bot.webhook import create_webhook_app

        await self.server.start()
        self.emulator.create_bot(self.token, BOT_USERNAME, first_name="모임")
        config = self.base_config.replace(
            telegram={
                "token": self.token,
                "base_url": self.server.base_url,
                "mode": "webhook",
                "webhook_url": "http://127.0.0.1/telegram",
                "webhook_secret": WEBHOOK_SECRET,
            }
        )
        for _ in range(self.count):
            application = build_application(
                config,
                BuildOptions(
                    clock=self.options.clock,
                    start_scheduler=self.options.run_scheduler,
                    start_sender=self.options.run_sender,
                ),
            )
            await application.initialize()
            await application.post_init(application)
            await application.start()
            server = LocalServer(create_webhook_app(application, config))
            await server.start()
            self.instances.append(Instance(application, server, f"{server.url}/telegram"))
        urls = [instance.url for instance in self.instances]
        for instance in self.instances:  # each instance registers at start, as in production
            await instance.application.bot.set_webhook(instance.url, secret_token=WEBHOOK_SECRET)
        self.emulator.set_webhook_targets(self.token, urls)

    async def stop(self) -> None:
        """Stop every instance and the emulator."""
        self.emulator.interrupt()
        for instance in self.instances:
            await instance.server.stop()
            with contextlib.suppress(Exception):
                await instance.application.stop()
            await instance.application.shutdown()
            await instance.application.post_shutdown(instance.application)
        await self.server.stop()
        await self.emulator.close()

    async def __aenter__(self) -> LocalCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def runtime(self):
        """The first instance's runtime (they share the database)."""
        return self.instances[0].application.runtime

    async def settle(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Wait until every update was delivered and handled and nothing due is left to send."""
        async with asyncio.timeout(timeout):
            while True:
                if self.emulator.pending_updates(self.token) == 0:
                    for instance in self.instances:
                        await instance.application.update_processor.wait_idle()
                    for instance in self.instances:
                        await instance.application.runtime.cards.refresh_due(force=True)
                    due = await read_retrying_once(
                        self.runtime.sessions,
                        lambda session: outbox.pending_count(session, now=self.runtime.now()),
                    )
                    if due == 0 and self.emulator.pending_updates(self.token) == 0:
                        return
                    for instance in self.instances:
                        sender = instance.application.runtime.sender
                        if self.options.run_sender:
                            sender.wake()
                        else:
                            await sender.drain()
                await asyncio.sleep(0.005)

    def handled_by(self) -> list[int]:
        """How many updates each instance handled (their webhook deliveries)."""
        deliveries = self.emulator.webhook_deliveries(self.token)
        return [
            sum(1 for d in deliveries if d.get("url") == i.url and d.get("status") == 200)
            for i in self.instances
        ]
