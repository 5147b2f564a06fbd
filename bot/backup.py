"""Backups: a consistent copy of a live SQLite database, and putting one back.

SQLite's online backup API copies the database page by page while the bot keeps running, and
the result is a consistent snapshot (it restarts the copy if a writer changes pages under it).
PostgreSQL has its own tools; `moim backup` prints the command to use.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.config import Config


class BackupError(Exception):
    """A backup or restore that cannot be done, in one line."""


@dataclass(frozen=True)
class BackupResult:
    """What was written."""

    path: Path
    size: int
    tables: int


def sqlite_path(config: Config) -> Path | None:
    """The database file for an SQLite configuration, None for PostgreSQL."""
    url = make_url(config.database_url)
    if not url.drivername.startswith("sqlite"):
        return None
    return Path(url.database)


def postgres_instructions(config: Config) -> str:
    """How to back up and restore the PostgreSQL database of this configuration."""
    url = make_url(config.database_url)
    target = (
        f"-h {url.host or 'localhost'} -p {url.port or 5432} -U {url.username or 'postgres'} "
        f"{url.database}"
    )
    schema = f" -n {config.database.schema}" if config.database.schema else ""
    return (
        "moim's data is in PostgreSQL; use its own tools (they copy a live database safely):\n"
        f"  backup:  pg_dump --format=custom{schema} --file=moim.dump {target}\n"
        f"  restore: pg_restore --clean --if-exists --dbname={url.database} "
        f"-h {url.host or 'localhost'} -U {url.username or 'postgres'} moim.dump\n"
        "Stop moim (every instance) before a restore."
    )


def backup_sqlite(source: Path, destination: Path) -> BackupResult:
    """Copy a live SQLite database to ``destination`` with the online backup API."""
    if not source.exists():
        raise BackupError(f"{source}: no database file to back up")
    if destination.exists():
        raise BackupError(f"{destination}: already exists; choose a new file name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30) as live:
        copy = sqlite3.connect(destination)
        try:
            live.backup(copy, pages=1024)
            problems = copy.execute("PRAGMA integrity_check").fetchone()[0]
            tables = copy.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        finally:
            copy.close()
    if problems != "ok":
        destination.unlink(missing_ok=True)
        raise BackupError(f"the copy failed its integrity check: {problems}")
    return BackupResult(path=destination, size=destination.stat().st_size, tables=tables)


def restore_sqlite(backup: Path, target: Path) -> BackupResult:
    """Replace the database at ``target`` with a backup (stop the bot first)."""
    if not backup.exists():
        raise BackupError(f"{backup}: no such backup file")
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as source:
        problems = source.execute("PRAGMA integrity_check").fetchone()[0]
        if problems != "ok":
            raise BackupError(f"{backup}: not a sound database ({problems})")
        target.parent.mkdir(parents=True, exist_ok=True)
        destination = sqlite3.connect(target, timeout=30)
        try:
            source.backup(destination)
            tables = destination.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        finally:
            destination.close()
    return BackupResult(path=target, size=target.stat().st_size, tables=tables)
