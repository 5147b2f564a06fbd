"""Configuration: a TOML file, overridden per option by MOIM_SECTION_KEY environment variables."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "MOIM_"
DEFAULT_CONFIG_PATH = Path("config.toml")
SUPPORTED_LANGUAGES = ("ko", "en")


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the option and what is wrong."""


def _one_of(*choices: str):
    def check(value: str) -> str | None:
        return None if value in choices else "must be one of " + ", ".join(choices)

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not a known time zone (e.g. Asia/Seoul)"
    return None


def _clock_time(value: str) -> str | None:
    if re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return None
    return 'must be a time of day like "22:00"'


def _identifier(value: str) -> str | None:
    if value == "" or re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        return None
    return "must be a lower-case SQL name (letters, digits, _)"


def _base_url(value: str) -> str | None:
    if value == "" or re.match(r"^https?://", value):
        return None
    return 'must start with http:// or https:// (e.g. "http://127.0.0.1:8081/bot")'


def option(default, doc: str, check=None):
    """Declare one option with its default, its one-line documentation and a validator."""
    return field(default=default, metadata={"doc": doc, "check": check})


def list_option(default: list, doc: str):
    """Declare a list option (a TOML array; in the environment, comma-separated)."""
    return field(default_factory=lambda: list(default), metadata={"doc": doc, "check": None})


@dataclass(frozen=True)
class TelegramConfig:
    """How moim talks to Telegram."""

    token: str = option("", "bot token from @BotFather; empty means: no Telegram (sandbox only)")
    base_url: str = option(
        "", 'Bot API address in PTB form, e.g. "http://127.0.0.1:8081/bot"', _base_url
    )
    mode: str = option("polling", "polling or webhook", _one_of("polling", "webhook"))
    webhook_url: str = option("", "public https URL Telegram posts updates to (webhook mode)")
    webhook_secret: str = option("", "secret token Telegram sends with every webhook request")
    listen_host: str = option("127.0.0.1", "address the webhook server listens on")
    listen_port: int = option(8443, "port the webhook server listens on", _positive)
    concurrency: int = option(8, "updates handled at the same time (different chats)", _positive)
    poll_timeout: int = option(10, "long-polling timeout in seconds", _non_negative)


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the data lives."""

    url: str = option("", "SQLAlchemy URL; empty = SQLite file moim.sqlite3 beside the config")
    schema: str = option(
        "", "PostgreSQL schema for moim's tables (empty = the default, public)", _identifier
    )
    echo: bool = option(False, "log every SQL statement (debugging only)")
    pool_size: int = option(10, "connections per instance (PostgreSQL)", _positive)


@dataclass(frozen=True)
class BotConfig:
    """What people see and who runs the bot."""

    default_language: str = option(
        "ko", "language for people whose Telegram language is not supported", _one_of("ko", "en")
    )
    timezone: str = option("Asia/Seoul", "time zone for new organisations", _timezone)
    admins: list[int] = list_option([], "Telegram user ids of the bot's administrators")
    operator_name: str = option("", "who runs this bot, named in the privacy notice")
    operator_contact: str = option("", "how to reach them about personal data (e-mail, phone)")
    privacy_notice_version: int = option(
        1,
        "raise it when the privacy notice changes: everyone is asked to consent again",
        _positive,
    )
    retention_days: int = option(
        365, "days personal data is kept after someone leaves or stops using moim", _positive
    )
    minimum_age: int = option(14, "youngest age allowed to register (PIPA: 14)", _positive)


@dataclass(frozen=True)
class TiersConfig:
    """Vote weight of each membership tier (used by weighted votes)."""

    supporter_weight: float = option(1.0, "vote weight of a supporter (후원회원)", _non_negative)
    full_weight: float = option(1.0, "vote weight of a full member (정회원)", _non_negative)


@dataclass(frozen=True)
class DeliveryConfig:
    """How fast and how carefully messages go out."""

    messages_per_second: float = option(
        29.0, "bot-wide sending rate; Telegram allows about 30", _positive
    )
    private_chat_per_second: float = option(1.0, "sending rate to one person", _positive)
    group_per_minute: float = option(
        19.0, "sending rate to one group; Telegram allows 20", _positive
    )
    paid_broadcast: bool = option(False, "use allow_paid_broadcast (costs Stars) to go past 30/s")
    paid_messages_per_second: float = option(
        900.0, "bot-wide rate when paid broadcast is on; Telegram allows 1,000", _positive
    )
    max_attempts: int = option(5, "tries for a message before it counts as failed", _positive)
    card_edit_group_seconds: float = option(
        3.0, "a live card in a group is edited at most this often (20 edits/min)", _positive
    )
    card_edit_private_seconds: float = option(
        1.0, "a live card in a private chat is edited at most this often", _positive
    )
    batch_size: int = option(30, "messages one sender claims at a time", _positive)
    concurrency: int = option(
        0, "sends in flight at once; 0 = 8, or 64 with paid broadcast", _non_negative
    )
    claim_seconds: int = option(
        30,
        "seconds claimed messages stay reserved; a live sender renews its claims, a crashed "
        "one's are sent again after this",
        _positive,
    )
    answer_timeout: float = option(
        60.0,
        "seconds to wait for Telegram's answer to a send (other sends go on meanwhile)",
        _positive,
    )
    resend_uncertain: bool = option(
        True,
        "resend a message whose send got no answer (it may have arrived): nobody misses "
        "it, a few may get it twice; false: never twice, a few may miss it",
    )
    quiet_hours_start: str = option("22:00", "announcements wait from this time ...", _clock_time)
    quiet_hours_end: str = option(
        "08:00", "... until this time (organisation's zone)", _clock_time
    )


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduled work (reminders, closing polls, scheduled announcements)."""

    tick_seconds: float = option(1.0, "how often the database is checked for due work", _positive)
    max_attempts: int = option(
        5, "tries for a failing job before it is set aside (dead letter)", _positive
    )


@dataclass(frozen=True)
class MeetingsConfig:
    """Meetings: reminders, check-in, how far ahead a recurring series is scheduled."""

    reminder_minutes: list[int] = list_option(
        [1440, 60], "reminders of a new meeting, in minutes before it starts (organisers change)"
    )
    checkin_minutes: int = option(
        30, "check-in closes by itself this many minutes after it is opened", _positive
    )
    scheduled_ahead: int = option(
        4,
        "occurrences of a recurring meeting kept scheduled ahead (with their reminders)",
        _positive,
    )


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = option(
        "INFO", "DEBUG, INFO, WARNING or ERROR", _one_of("DEBUG", "INFO", "WARNING", "ERROR")
    )


@dataclass(frozen=True)
class Config:
    """All of moim's configuration."""

    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    tiers: TiersConfig = field(default_factory=TiersConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    meetings: MeetingsConfig = field(default_factory=MeetingsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    base_dir: Path = field(default=Path("."), compare=False)

    def replace(self, **sections) -> Config:
        """Return a copy with some options changed, e.g. ``replace(telegram={"token": "x"})``."""
        changes = {}
        for name, values in sections.items():
            if name == "base_dir":
                changes[name] = values
            else:
                changes[name] = dataclasses.replace(getattr(self, name), **values)
        return dataclasses.replace(self, **changes)

    @property
    def database_url(self) -> str:
        """The database URL, defaulting to an SQLite file beside the configuration file."""
        url = self.database.url
        if url:
            # People paste plain URLs; the async drivers are what moim runs on.
            for plain, driver in (
                ("postgresql://", "postgresql+asyncpg://"),
                ("postgres://", "postgresql+asyncpg://"),
                ("sqlite:///", "sqlite+aiosqlite:///"),
            ):
                if url.startswith(plain):
                    return driver + url[len(plain) :]
            return url
        return f"sqlite+aiosqlite:///{(self.base_dir / 'moim.sqlite3').resolve()}"


SECTIONS: dict[str, type] = {
    f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "base_dir"
}


def iter_options():
    """Yield (section, key, type, default, doc) for every option, for docs and tests."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield section, f.name, hints[f.name], default, f.metadata["doc"]


def _coerce(name: str, expected, value, *, from_env: bool):
    """Turn a TOML or environment value into the option's type, or raise ConfigError."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if from_env and value.strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{name}: must be true or false (got {value!r})")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise ConfigError(f"{name}: must be a whole number (got {value!r})")
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name}: must be a number (got {value!r})")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: must be a text in quotes (got {value!r})")
    if typing.get_origin(expected) is list:
        (item_type,) = typing.get_args(expected)
        if from_env:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: must be a list like [1, 2] (got {value!r})")
        return [_coerce(name, item_type, item, from_env=from_env) for item in value]
    raise ConfigError(f"{name}: unsupported option type")  # pragma: no cover - schema bug


def _toml_error_line(path: Path, error: tomllib.TOMLDecodeError) -> str:
    return f"{path}: not valid TOML: {error}"


def load_config(
    path: Path | None = None, environ: typing.Mapping[str, str] | None = None
) -> Config:
    """Read the TOML file (if any), apply environment overrides and validate every option."""
    environ = os.environ if environ is None else environ
    explicit = path is not None
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    raw: dict = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(_toml_error_line(path, error)) from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot be read ({error})") from None
    elif explicit:
        raise ConfigError(f"{path}: no such configuration file")

    for section in raw:
        if section not in SECTIONS:
            raise ConfigError(f"[{section}]: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{section}: must be a section like [{section}]")

    sections = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        given = raw.get(section, {})
        known = {f.name for f in dataclasses.fields(cls)}
        for key in given:
            if key not in known:
                raise ConfigError(
                    f"{section}.{key}: unknown option (known: {', '.join(sorted(known))})"
                )
        values = {}
        for f in dataclasses.fields(cls):
            name = f"{section}.{f.name}"
            env_name = f"{ENV_PREFIX}{section}_{f.name}".upper()
            if env_name in environ:
                value = _coerce(env_name, hints[f.name], environ[env_name], from_env=True)
            elif f.name in given:
                value = _coerce(name, hints[f.name], given[f.name], from_env=False)
            else:
                continue
            check = f.metadata.get("check")
            problem = check(value) if check else None
            if problem:
                raise ConfigError(f"{name}: {problem} (got {value!r})")
            values[f.name] = value
        sections[section] = cls(**values)

    config = Config(**sections, base_dir=path.resolve().parent)
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    """Checks that involve more than one option."""
    telegram = config.telegram
    if telegram.mode == "webhook":
        if not telegram.token:
            raise ConfigError("telegram.token: webhook mode needs a bot token")
        if not telegram.webhook_url:
            raise ConfigError("telegram.webhook_url: webhook mode needs the public URL")
        if len(telegram.webhook_secret) < 16 or not re.fullmatch(
            r"[A-Za-z0-9_-]{16,256}", telegram.webhook_secret
        ):
            raise ConfigError(
                "telegram.webhook_secret: webhook mode needs a secret of 16-256 characters "
                "(letters, digits, _ and -)"
            )
    url = config.database.url
    if url and not config.database_url.startswith(
        ("sqlite+aiosqlite:///", "postgresql+asyncpg://")
    ):
        raise ConfigError(
            "database.url: must start with sqlite:/// or postgresql:// "
            f"(got {url.split('://')[0]}://...)"
        )


def example_config() -> str:
    """config.example.toml, generated from the options above (python -m bot.config)."""
    lines = [
        "# moim configuration. Copy to config.toml and change what you need; every option can",
        "# also be set in the environment as MOIM_<SECTION>_<KEY>, e.g. MOIM_TELEGRAM_TOKEN.",
        "# Options left out keep the default shown here.",
    ]
    current = None
    for section, key, _type, default, doc in iter_options():
        if section != current:
            lines += ["", f"[{section}]", f"# {SECTIONS[section].__doc__}"]
            current = section
        if isinstance(default, bool):
            value = "true" if default else "false"
        elif isinstance(default, str | list):
            value = json.dumps(default, ensure_ascii=False)
        else:
            value = repr(default)
        lines += [f"# {doc}", f"{key} = {value}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(example_config(), end="")
