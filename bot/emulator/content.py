"""Message content rules the spec states only in prose: lengths, keyboards, commands, images."""

from __future__ import annotations

import re
import struct
from typing import Any

from bot.emulator.errors import bad_request
from bot.emulator.html import parse_html, utf16_len

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_BUTTONS = 100
MAX_CALLBACK_ANSWER = 200
_TRIM = " \t\n\r\v\f"
_BOT_COMMAND = re.compile(r"(?<![\w/<>])/[a-zA-Z0-9_]{1,64}(?:@[a-zA-Z0-9_]{3,32})?(?![\w/<>])")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}\Z")
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def format_text(
    raw: str,
    parse_mode: str | None,
    entities: list[dict[str, Any]] | None,
    *,
    strict_html: bool = True,
) -> tuple[str, list[dict[str, Any]]]:
    """Apply parse_mode or explicit entities, then trim as Telegram does."""
    if entities:
        # Telegram uses explicit entities and ignores parse_mode when both are given.
        total = utf16_len(raw)
        for entity in entities:
            if entity["offset"] < 0 or entity["length"] <= 0:
                raise bad_request("can't parse entities: entity offset or length is invalid")
            if entity["offset"] + entity["length"] > total:
                raise bad_request("can't parse entities: entity ends after the end of the text")
        text, ents = raw, [dict(e) for e in entities]
    elif parse_mode:
        mode = parse_mode.lower()
        if mode == "html":
            text, ents = parse_html(raw, strict=strict_html)
        elif mode in ("markdown", "markdownv2"):
            raise bad_request("unsupported parse mode in emulator")
        else:
            raise bad_request("unsupported parse_mode")
    else:
        text, ents = raw, []
    return _trim(text, ents)


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped = text.strip(_TRIM)
    if stripped == text:
        return text, entities
    if not stripped:
        return "", []
    # only ASCII whitespace is trimmed, so characters and UTF-16 units agree here
    lead = len(text) - len(text.lstrip(_TRIM))
    end = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        stop = min(entity["offset"] + entity["length"] - lead, end)
        if stop > start:
            entity["offset"], entity["length"] = start, stop - start
            kept.append(entity)
    return stripped, kept


def check_text(text: str) -> None:
    """Reject an empty or too long message text (counted after parsing, in UTF-16 units)."""
    if not text:
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise bad_request("message is too long")


def check_caption(caption: str) -> None:
    """Reject a caption over 1,024 UTF-16 units after parsing."""
    if utf16_len(caption) > MAX_CAPTION:
        raise bad_request("message caption is too long")


def check_inline_keyboard(markup: dict[str, Any]) -> dict[str, Any]:
    """Apply the inline keyboard rules; return the markup as Telegram echoes it back."""
    rows = markup["inline_keyboard"]
    count = 0
    clean_rows = []
    for row in rows:
        clean_row = []
        for button in row:
            count += 1
            if not button.get("text"):
                raise bad_request("inline keyboard button text must be non-empty")
            # Telegram reads an empty value as an absent one.
            button = {k: v for k, v in button.items() if v != ""}
            actions = [k for k in _BUTTON_ACTIONS if k in button]
            if not actions:
                raise bad_request(
                    "can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard"
                )
            if len(actions) > 1:
                raise bad_request(
                    "can't parse inline keyboard button: "
                    "exactly one of the optional fields must be used"
                )
            data = button.get("callback_data")
            if data is not None and len(data.encode("utf-8")) > MAX_CALLBACK_DATA:
                raise bad_request("BUTTON_DATA_INVALID")
            clean_row.append(button)
        clean_rows.append(clean_row)
    if count > MAX_BUTTONS:
        raise bad_request("reply markup is too long")
    return {"inline_keyboard": clean_rows}


def check_reply_keyboard(markup: dict[str, Any]) -> None:
    """Reject reply keyboards with empty button texts or too many buttons."""
    count = 0
    for row in markup.get("keyboard", []):
        for button in row:
            count += 1
            if not button.get("text"):
                raise bad_request("keyboard button text must be non-empty")
    if count > 300:
        raise bad_request("reply markup is too long")


def bot_command_entities(text: str) -> list[dict[str, Any]]:
    """Find /commands in a person's text, as Telegram marks them with bot_command entities."""
    if "/" not in text:
        return []
    out = []
    for match in _BOT_COMMAND.finditer(text):
        offset = utf16_len(text[: match.start()])
        out.append({"type": "bot_command", "offset": offset, "length": utf16_len(match.group(0))})
    return out


def check_bot_command(command: dict[str, Any]) -> None:
    """Apply setMyCommands' rules to one BotCommand."""
    if not _COMMAND_NAME.match(command["command"]):
        raise bad_request("BOT_COMMAND_INVALID")
    description = command["description"]
    if not description.strip() or len(description) > 256:
        raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, GIF or WebP image; None if it is none of these."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            index += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[index + 2 : index + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None
