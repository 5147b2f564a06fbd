"""The server-side commands: backup and restore, migrate, admin add, org create."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.backup import BackupError, backup_sqlite, restore_sqlite
from bot.cli import main


def _write_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[bot]\ntimezone = "Asia/Seoul"\n', encoding="utf-8")
    return path


def _count(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_cli_migrate_admin_and_org_create(tmp_path, capsys):
    config = str(_write_config(tmp_path))
    assert main(["--config", config, "migrate"]) == 0
    assert main(["--config", config, "admin", "add", "4242"]) == 0
    assert "4242 is now a bot administrator" in capsys.readouterr().out
    assert main(["--config", config, "admin", "add", "4242"]) == 0
    assert "already" in capsys.readouterr().out
    assert (
        main(
            [
                "--config",
                config,
                "org",
                "create",
                "--name",
                "Seoul Climate Network",
                "--kind",
                "network",
            ]
        )
        == 0
    )
    assert "org_seoul-climate-network" in capsys.readouterr().out
    assert (
        main(
            [
                "--config",
                config,
                "org",
                "create",
                "--name",
                "다른 이름",
                "--slug",
                "seoul-climate-network",
            ]
        )
        == 2
    )
    assert "slug_taken" in capsys.readouterr().err
    database = tmp_path / "moim.sqlite3"
    assert _count(database, "organization") == 1 and _count(database, "botadmin") == 1


def test_backup_of_a_live_database_while_it_is_written_then_restore(tmp_path, capsys):
    config = str(_write_config(tmp_path))
    assert main(["--config", config, "migrate"]) == 0
    database = tmp_path / "moim.sqlite3"
    stop = threading.Event()

    def keep_writing() -> None:
        with sqlite3.connect(database, timeout=30) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            n = 0
            while not stop.is_set():
                n += 1
                connection.execute(
                    "INSERT INTO botadmin (telegram_user_id, added_at) VALUES (?, ?)",
                    (n, "2026-12-01 00:00:00"),
                )
                connection.commit()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while _count(database, "botadmin") < 50:
            stop.wait(0.01)
        backup = tmp_path / "copy.sqlite3"
        assert main(["--config", config, "backup", str(backup)]) == 0
    finally:
        stop.set()
        writer.join()
    assert "integrity ok" in capsys.readouterr().out
    copied = _count(backup, "botadmin")
    assert copied >= 50
    with sqlite3.connect(database) as connection:  # the live database moves on (or breaks)
        connection.execute("DELETE FROM botadmin")
    assert main(["--config", config, "restore", str(backup)]) == 0
    assert _count(database, "botadmin") == copied
    # The restored database is one moim can run on.
    assert main(["--config", config, "migrate"]) == 0


def test_backup_refuses_to_overwrite_and_restore_refuses_garbage(tmp_path):
    database = tmp_path / "db.sqlite3"
    sqlite3.connect(database).close()
    existing = tmp_path / "exists.sqlite3"
    existing.write_bytes(b"")
    with pytest.raises(BackupError, match="already exists"):
        backup_sqlite(database, existing)
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises((BackupError, sqlite3.DatabaseError)):
        restore_sqlite(garbage, database)


def test_backup_for_postgresql_prints_the_tools_to_use(tmp_path, capsys):
    path = tmp_path / "config.toml"
    path.write_text('[database]\nurl = "postgresql://moim@db.example.org/moim"\n')
    assert main(["--config", str(path), "backup"]) == 0
    out = capsys.readouterr().out
    assert "pg_dump --format=custom" in out and "pg_restore" in out
