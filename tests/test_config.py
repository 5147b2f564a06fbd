"""Configuration: file, environment overrides, and one clear line for every mistake."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, example_config, iter_options, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file_use_sqlite_beside_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.telegram.mode == "polling"
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path / 'moim.sqlite3'}"
    assert config.bot.timezone == "Asia/Seoul"


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, '[telegram]\ntoken = "from-file"\n[bot]\nadmins = [1]\n')
    config = load_config(
        path,
        environ={
            "MOIM_TELEGRAM_TOKEN": "from-env",
            "MOIM_BOT_ADMINS": "5, 6",
            "MOIM_TELEGRAM_CONCURRENCY": "4",
            "MOIM_DATABASE_URL": "postgresql://u@db/moim",
        },
    )
    assert config.telegram.token == "from-env"
    assert config.bot.admins == [5, 6]
    assert config.telegram.concurrency == 4
    assert config.database_url == "postgresql+asyncpg://u@db/moim"


@pytest.mark.parametrize(
    ("text", "environ", "expected"),
    [
        ('[telegram]\nmode = "carrier-pigeon"\n', {}, "telegram.mode: must be one of"),
        ("[telegram]\nconcurrency = 0\n", {}, "telegram.concurrency: must be greater than 0"),
        ('[telegram]\nconcurrency = "many"\n', {}, "telegram.concurrency: must be a whole number"),
        ("[telegram]\ntokn = 1\n", {}, "telegram.tokn: unknown option"),
        ("[telgram]\n", {}, "[telgram]: unknown section"),
        ('[bot]\ntimezone = "Mars/Olympus"\n', {}, "bot.timezone: is not a known time zone"),
        ("", {"MOIM_TELEGRAM_CONCURRENCY": "lots"}, "MOIM_TELEGRAM_CONCURRENCY: must be a whole"),
        ('[telegram]\nmode = "webhook"\ntoken = "t"\n', {}, "telegram.webhook_url: webhook mode"),
        ('[database]\nurl = "mysql://x"\n', {}, "database.url: must start with"),
        ("[telegram\ntoken = 1\n", {}, "not valid TOML"),
    ],
)
def test_mistakes_name_the_option(tmp_path, text, environ, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ=environ)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_toml_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2"):
        load_config(write(tmp_path, '[bot]\ntimezone = "Asia/Seoul\n'), environ={})


def test_cli_config_error_is_one_line_and_exit_code_2(tmp_path):
    path = write(tmp_path, '[telegram]\nmode = "fax"\n')
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(path), "run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "telegram.mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_token_points_to_the_sandbox(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MOIM_TELEGRAM_TOKEN", raising=False)
    assert main(["--config", str(write(tmp_path, "")), "run"]) == 2
    assert "moim sandbox" in capsys.readouterr().err


def test_missing_config_file_given_explicitly(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml"), "migrate"]) == 2
    assert "no such configuration file" in capsys.readouterr().err


def test_example_config_documents_every_option_and_loads():
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert text == example_config(), "regenerate it: python -m bot.config > config.example.toml"
    parsed = tomllib.loads(text)
    for section, key, _type, default, _doc in iter_options():
        assert key in parsed[section], f"{section}.{key} missing from config.example.toml"
        assert parsed[section][key] == default, f"{section}.{key} default differs"
        assert re.search(rf"#.*\n{re.escape(key)} =", text), f"{section}.{key} has no comment"
    load_config(ROOT / "config.example.toml", environ={})


def test_run_serves_on_uvloop_and_falls_back_to_asyncio(monkeypatch):
    """`moim run` takes uvloop's event loop where it is installed, asyncio's where not."""
    import sys

    import uvloop

    from bot.cli import event_loop_factory

    loop = event_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on Windows: the import fails
    loop = event_loop_factory()()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
