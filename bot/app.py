"""The one place that builds moim: engine, sessions, renderer, scheduler, sender, handlers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from telegram import BotCommand, BotCommandScopeDefault
from telegram.ext import ApplicationBuilder, ContextTypes

import handlers
from bot.cards import CardRefresher
from bot.clock import Clock, SystemClock
from bot.config import Config
from bot.context import MoimApplication, MoimContext
from bot.db import is_sqlite, make_engine, make_sessionmaker, migrate
from bot.delivery import OutboxSender, sender_concurrency
from bot.http import BotApiRequest
from bot.processing import UpdateProcessor
from bot.ratelimit import TelegramRateLimiter
from bot.render import Renderer
from bot.runtime import Runtime
from bot.scheduler import JobRunner

log = logging.getLogger(__name__)
SANDBOX_TOKEN = "123456789:SANDBOX-moim-local-emulator-token"


@dataclass
class BuildOptions:
    """Knobs for tests, the sandbox and benchmarks (production uses the defaults)."""

    clock: Clock | None = None
    run_migrations: bool = True
    start_sender: bool = True
    start_scheduler: bool = True
    set_commands: bool = True


def build_runtime(config: Config, clock: Clock | None = None) -> Runtime:
    """The runtime: database engine and sessions, renderer, clock."""
    engine = make_engine(
        config.database_url,
        echo=config.database.echo,
        pool_size=config.database.pool_size,
        schema=config.database.schema,
    )
    return Runtime(
        config=config,
        clock=clock or SystemClock(),
        engine=engine,
        sessions=make_sessionmaker(engine),
        renderer=Renderer(default_timezone=config.bot.timezone),
    )


def build_application(config: Config, options: BuildOptions | None = None) -> MoimApplication:
    """Build the PTB application with every feature wired in; nothing runs until started."""
    options = options or BuildOptions()
    runtime = build_runtime(config, options.clock)
    processor = UpdateProcessor(
        config.telegram.concurrency, share_transactions=is_sqlite(config.database_url)
    )
    delivery = config.delivery
    builder = (
        ApplicationBuilder()
        .application_class(MoimApplication, kwargs={"runtime": runtime})
        .context_types(ContextTypes(context=MoimContext))
        .token(config.telegram.token or SANDBOX_TOKEN)
        .concurrent_updates(processor)
        .rate_limiter(
            TelegramRateLimiter(
                per_second=delivery.messages_per_second,
                private_per_second=delivery.private_chat_per_second,
                group_per_minute=delivery.group_per_minute,
                paid_per_second=delivery.paid_messages_per_second,
            )
        )
        .request(_request(config))
        .get_updates_request(BotApiRequest(connection_pool_size=1, read_timeout=60))
        .post_init(_post_init(options))
        .post_shutdown(_post_shutdown)
    )
    if config.telegram.base_url:
        builder = builder.base_url(config.telegram.base_url).base_file_url(
            config.telegram.base_url.replace("/bot", "/file/bot", 1)
        )
    application = builder.build()
    processor.application = application
    handlers.register_all(application)
    runtime.scheduler = JobRunner(runtime)
    return application


def _request(config: Config) -> BotApiRequest:
    # Room for the sender's sends in flight, as many parked ones waiting for a slow answer
    # (see bot.delivery), and the replies.
    return BotApiRequest(
        connection_pool_size=2 * sender_concurrency(config.delivery) + 8,
        read_timeout=15,
        write_timeout=15,
        connect_timeout=10,
        pool_timeout=30,
    )


def _post_init(options: BuildOptions):
    async def post_init(application: MoimApplication) -> None:
        """Open what the bot needs: schema, bot identity, command menu, sender, scheduler."""
        runtime = application.runtime
        if options.run_migrations:
            await migrate(runtime.engine)
        runtime.renderer.bot_username = application.bot.username
        if options.set_commands:
            await _set_commands(application)
        runtime.sender = OutboxSender(runtime, application.bot)
        runtime.cards = CardRefresher(runtime, application.bot)
        if options.start_sender:
            runtime.extras["sender_task"] = asyncio.create_task(
                runtime.sender.run_forever(), name="moim-outbox-sender"
            )
            runtime.extras["cards_task"] = asyncio.create_task(
                runtime.cards.run_forever(), name="moim-card-refresher"
            )
        if options.start_scheduler and application.job_queue is not None:
            application.job_queue.run_repeating(
                runtime.scheduler.tick,
                interval=runtime.config.scheduler.tick_seconds,
                first=0.1,
                name="moim-scheduler-tick",
                job_kwargs={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            )

    return post_init


async def _post_shutdown(application: MoimApplication) -> None:
    """Stop the sender and close the database."""
    runtime = application.runtime
    for worker in (runtime.sender, runtime.cards):
        if worker is not None:
            worker.stop()
    for name in ("sender_task", "cards_task"):
        task = runtime.extras.pop(name, None)
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
    await runtime.engine.dispose()


async def _set_commands(application: MoimApplication) -> None:
    """The command menu in both languages (citizen commands; organisers see /help)."""
    runtime = application.runtime
    for language in ("ko", "en"):
        lines = [
            line
            for template in runtime.features.command_menus
            for line in runtime.renderer.text(template, language).splitlines()
        ]
        commands = [BotCommand(*line.split(" - ", 1)) for line in lines if " - " in line]
        await application.bot.set_my_commands(
            commands,
            scope=BotCommandScopeDefault(),
            language_code=None if language == "ko" else language,
        )
