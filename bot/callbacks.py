"""Inline-button callback data: short, versioned, parsed in one place.

Format: ``v1:<feature>:<verb>:<arg>:<arg>...`` (at most 64 bytes, Telegram's limit). The data
comes back from the client, so it is only a claim: handlers check it against the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VERSION = "v1"
MAX_BYTES = 64
_ARG = re.compile(r"^[A-Za-z0-9_.-]{0,40}$")


class CallbackTooLong(ValueError):
    """Raised when encoded callback data would exceed Telegram's 64 bytes (a programming error)."""


@dataclass(frozen=True)
class Callback:
    """Parsed callback data."""

    feature: str
    verb: str
    args: tuple[str, ...]

    @property
    def action(self) -> str:
        """``feature:verb``, the form handlers are registered under."""
        return f"{self.feature}:{self.verb}"

    def int_arg(self, index: int) -> int | None:
        """Argument ``index`` as an int, or None if it is missing or not a number."""
        try:
            value = self.args[index]
        except IndexError:
            return None
        return int(value) if re.fullmatch(r"-?\d{1,18}", value) else None

    def str_arg(self, index: int) -> str | None:
        """Argument ``index`` as text, or None if missing."""
        return self.args[index] if index < len(self.args) else None


def encode(action: str, *args: object) -> str:
    """Build callback data for ``action`` ("feature:verb") and its arguments."""
    parts = [VERSION, *action.split(":")]
    for arg in args:
        text = str(int(arg)) if isinstance(arg, bool) else str(arg)
        if not _ARG.match(text):
            raise ValueError(f"callback argument {text!r} is not a short plain token")
        parts.append(text)
    data = ":".join(parts)
    if len(data.encode()) > MAX_BYTES:
        raise CallbackTooLong(data)
    return data


def decode(data: str | None) -> Callback | None:
    """Parse callback data; None for anything that is not current, well-formed moim data."""
    if not data or len(data.encode()) > MAX_BYTES:
        return None
    parts = data.split(":")
    if len(parts) < 3 or parts[0] != VERSION:
        return None
    if not all(_ARG.match(part) for part in parts[1:]):
        return None
    return Callback(feature=parts[1], verb=parts[2], args=tuple(parts[3:]))


class ButtonPattern:
    """Matches callback data of one action, for CallbackQueryHandler's ``pattern``.

    A callable, not an expression: PTB tries each of ~100 button handlers in turn, and for an
    expression (text or compiled) it calls ``re.match``, which looks it up in re's cache each
    time; this calls the compiled expression's own ``match``.
    """

    __slots__ = ("_match", "action", "pattern")

    def __init__(self, action: str) -> None:
        self.action = action
        self.pattern = "^" + re.escape(f"{VERSION}:{action}") + "(:|$)"
        self._match = re.compile(self.pattern).match

    def __call__(self, data: object) -> re.Match[str] | None:
        return self._match(data) if isinstance(data, str) else None


def pattern(action: str) -> ButtonPattern:
    """What matches callback data of ``action``, for CallbackQueryHandler."""
    return ButtonPattern(action)
