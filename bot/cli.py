"""The `moim` command: run, sandbox, migrate, admin and organisation management."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from bot.config import Config, ConfigError, load_config

log = logging.getLogger("moim")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moim",
        description="moim (모임): a Telegram bot for civic groups, cooperatives and networks.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default: ./config.toml if it exists, else built-in defaults)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (long polling, or webhook when configured)")
    sandbox = commands.add_parser(
        "sandbox", help="try moim in the terminal: local Telegram emulator, no token needed"
    )
    sandbox.add_argument("--name", default="민지", help="name of the first person (an admin)")
    sandbox.add_argument(
        "--database",
        default=None,
        help="SQLite file for the sandbox (default: a fresh temporary one)",
    )
    commands.add_parser("migrate", help="bring the database schema up to date")
    backup = commands.add_parser(
        "backup", help="write a consistent copy of the (live) SQLite database"
    )
    backup.add_argument(
        "destination",
        type=Path,
        nargs="?",
        default=None,
        help="file to write (default: moim-backup-YYYYmmdd-HHMMSS.sqlite3)",
    )
    restore = commands.add_parser(
        "restore", help="replace the SQLite database with a backup (stop the bot first)"
    )
    restore.add_argument("backup", type=Path)
    admin = commands.add_parser("admin", help="bot administrators")
    admin_commands = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    admin_add = admin_commands.add_parser("add", help="make a Telegram user a bot administrator")
    admin_add.add_argument("telegram_id", type=int)
    org = commands.add_parser("org", help="organisations")
    org_commands = org.add_subparsers(dest="org_command", metavar="ACTION", required=True)
    create = org_commands.add_parser("create", help="create an organisation")
    create.add_argument("--name", required=True)
    create.add_argument("--slug", default=None, help="short Latin name used in links")
    create.add_argument("--kind", choices=["group", "network"], default="group")
    create.add_argument(
        "--sensitive",
        action="store_true",
        help="membership is sensitive information (party, union, ...)",
    )
    create.add_argument(
        "--admin",
        type=int,
        default=None,
        help="Telegram id of a registered member who becomes its admin",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `moim` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"moim: configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        if args.command == "run":
            return run(config)
        if args.command == "sandbox":
            from bot.sandbox import run_sandbox

            return run_sandbox(config, name=args.name, database=args.database)
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command in ("backup", "restore"):
            return _backup_or_restore(config, args)
        if args.command == "admin":
            return asyncio.run(_admin_add(config, args.telegram_id))
        if args.command == "org":
            return asyncio.run(_org_create(config, args))
    except ConfigError as error:
        print(f"moim: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2


def tune_for_serving() -> None:
    """Interpreter settings for a long-running bot process, once everything is imported.

    Measured with the polls burst in bench/ (CPU per vote 3.3 → 2.7 ms, votes/s +30 %):
    - everything alive after start-up (modules, mappers, templates) never becomes garbage;
      frozen, the collector stops walking those hundreds of thousands of objects again and
      again while updates come in;
    - SQLite's statements run on aiosqlite's thread, and each result waits for the GIL while
      the event loop's thread is busy: handing the GIL over after 0.5 ms instead of 5 ms keeps
      the one database connection, which every update waits for, from idling.
    """
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(0.0005)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop where it is installed (Linux, macOS), else asyncio's own.

    Measured with the polls burst in bench/: CPU per vote 1.66 → 1.56 ms. Its loop, sockets
    and timers are C; asyncio's are Python, and a busy bot spends a fifth of its time there.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(config: Config) -> int:
    """`moim run`: long polling, or the webhook server in webhook mode."""
    if not config.telegram.token:
        raise ConfigError(
            "telegram.token: not set (MOIM_TELEGRAM_TOKEN); to try moim without Telegram "
            "run `moim sandbox`"
        )
    from bot.app import build_application

    application = build_application(config)
    tune_for_serving()
    if config.telegram.mode == "webhook":
        from bot.webhook import serve_webhook

        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve_webhook(application, config))
        return 0
    asyncio.set_event_loop(event_loop_factory()())
    application.run_polling(
        allowed_updates=[
            "message",
            "edited_message",
            "callback_query",
            "my_chat_member",
            "channel_post",
        ],
        timeout=config.telegram.poll_timeout,
        drop_pending_updates=False,
    )
    return 0


def _backup_or_restore(config: Config, args: argparse.Namespace) -> int:
    import datetime as dt

    from bot.backup import (
        BackupError,
        backup_sqlite,
        postgres_instructions,
        restore_sqlite,
        sqlite_path,
    )

    database = sqlite_path(config)
    if database is None:
        print(postgres_instructions(config))
        return 0
    try:
        if args.command == "backup":
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            destination = args.destination or Path(f"moim-backup-{stamp}.sqlite3")
            result = backup_sqlite(database, destination)
            print(
                f"backed up {database} to {result.path} ({result.size:,} bytes, "
                f"{result.tables} tables, integrity ok)"
            )
        else:
            result = restore_sqlite(args.backup, database)
            print(f"restored {args.backup} into {result.path} ({result.tables} tables)")
    except BackupError as error:
        print(f"moim: {error}", file=sys.stderr)
        return 2
    return 0


async def _migrate(config: Config) -> int:
    from bot.db import current_revision, make_engine, migrate

    engine = make_engine(config.database_url, schema=config.database.schema)
    try:
        await migrate(engine)
        print(f"database is at revision {await current_revision(engine)}")
    finally:
        await engine.dispose()
    return 0


async def _admin_add(config: Config, telegram_id: int) -> int:
    from bot.app import build_runtime
    from bot.db import migrate, transaction
    from bot.services import members

    runtime = build_runtime(config)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            added = await members.add_admin(session, telegram_id, now=runtime.now())
    finally:
        await runtime.engine.dispose()
    print(f"{telegram_id} is {'now' if added else 'already'} a bot administrator")
    return 0


async def _org_create(config: Config, args: argparse.Namespace) -> int:
    from bot.app import build_runtime
    from bot.db import migrate, transaction
    from bot.services import members, organizations
    from bot.services.errors import DomainError
    from models import OrgKind

    runtime = build_runtime(config)
    try:
        await migrate(runtime.engine)
        async with transaction(runtime.sessions) as session:
            creator = None
            if args.admin is not None:
                creator = await members.by_telegram_id(session, args.admin)
                if creator is None:
                    print(
                        f"moim: {args.admin} has not registered with the bot yet", file=sys.stderr
                    )
                    return 2
            slug = args.slug or await organizations.next_free_slug(session, args.name)
            try:
                org = await organizations.create_organization(
                    session,
                    creator=creator,
                    name=args.name,
                    slug=slug,
                    kind=OrgKind(args.kind),
                    sensitive=args.sensitive,
                    timezone=config.bot.timezone,
                    now=runtime.now(),
                )
            except DomainError as error:
                print(
                    f"moim: cannot create the organisation: {error.code} {error.params}",
                    file=sys.stderr,
                )
                return 2
    finally:
        await runtime.engine.dispose()
    print(f"created {org.name} ({org.kind}) — invitation payload: org_{org.slug}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
