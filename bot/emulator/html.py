"""Telegram's HTML parse mode: plain text plus message entities, or a 400 like Telegram's.

A hand-written scanner that follows tdlib's `parse_html` (td/telegram/MessageEntity.cpp): the
same tags, attributes, entity decoding and error texts. One deliberate difference, on by
default (`strict=True`): Telegram keeps a bare `&` (and an unknown entity such as `&nbsp;`)
as literal text, the emulator rejects it, because in moim every `&` a person reads comes out
of an autoescaping template; a bare one means something skipped escaping.
"""

from __future__ import annotations

import re
from typing import Any

from bot.emulator.errors import ApiError, bad_request

_SPECIAL = re.compile(r"[<&]")
_SPACES = " \t\r\n\v\f"
_ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# tdlib sorts entities by offset, then longer first, then by these priorities.
_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "text_mention": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_USER_LINK = re.compile(r"tg://user\?id=(\d+)\Z", re.IGNORECASE)
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
_ALLOWED_SCHEMES = frozenset({"http", "https", "tg", "ton", "tonsite", "ftp"})


def utf16_len(text: str) -> int:
    """Length of text in UTF-16 code units, the unit of Telegram's limits and offsets."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) >> 1


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML; return (plain text, entities) or raise ApiError(400)."""
    if "<" not in text and "&" not in text:
        return text, []
    parser = _Parser(text, strict)
    return parser.run()


def _error(message: str) -> ApiError:
    return bad_request("can't parse entities: " + message)


def _unclosed(tag: str, offset: int) -> str:
    return f'Unclosed start tag "{tag}" at byte offset {offset}'


def _bare_ampersand(offset: int) -> str:
    return (
        f'Unescaped "&" at byte offset {offset} (Telegram would keep it as text; '
        "the emulator rejects it: write &amp;)"
    )


class _Parser:
    __slots__ = ("entities", "out", "plain_len", "src", "stack", "strict", "u16")

    def __init__(self, src: str, strict: bool):
        self.src = src
        self.strict = strict
        self.out: list[str] = []
        self.u16 = 0
        self.plain_len = 0
        self.entities: list[dict[str, Any]] = []
        # (tag, argument, utf16 offset, plain-text index) of every open tag
        self.stack: list[tuple[str, str, int, int]] = []

    def byte_offset(self, index: int) -> int:
        """Telegram reports positions in UTF-8 bytes."""
        return len(self.src[:index].encode("utf-8"))

    def emit(self, chunk: str) -> None:
        """Append plain text and advance the offsets."""
        if chunk:
            self.out.append(chunk)
            self.u16 += utf16_len(chunk)
            self.plain_len += len(chunk)

    def run(self) -> tuple[str, list[dict[str, Any]]]:
        """Scan the whole source."""
        src = self.src
        n = len(src)
        i = 0
        while i < n:
            match = _SPECIAL.search(src, i)
            if match is None:
                self.emit(src[i:])
                break
            j = match.start()
            self.emit(src[i:j])
            if src[j] == "&":
                decoded, end = self.decode_entity(j)
                if decoded is None:
                    if self.strict:
                        raise _error(_bare_ampersand(self.byte_offset(j)))
                    self.emit("&")
                    i = j + 1
                else:
                    self.emit(decoded)
                    i = end
            elif j + 1 < n and src[j + 1] == "/":
                i = self.end_tag(j)
            else:
                i = self.start_tag(j)
        if self.stack:
            raise _error(f'Can\'t find end tag corresponding to start tag "{self.stack[-1][0]}"')
        plain = "".join(self.out)
        for entity in self.entities:
            if entity["type"] == "code":
                entity.pop("language", None)
        self.entities.sort(key=lambda e: (e["offset"], -e["length"], _PRIORITY[e["type"]]))
        return plain, self.entities

    def decode_entity(self, pos: int) -> tuple[str | None, int]:
        """Decode `&...;` at pos as tdlib does; (None, pos) when it is not an entity."""
        src = self.src
        n = len(src)
        end = pos + 1
        if end < n and src[end] == "#":
            end += 1
            code = 0
            if end < n and src[end] == "x":
                end += 1
                start = end
                while end < n and src[end] in "0123456789abcdefABCDEF":
                    end += 1
                if start < end < pos + 10:
                    code = int(src[start:end], 16)
            else:
                start = end
                while end < n and src[end].isascii() and src[end].isdigit():
                    end += 1
                if start < end < pos + 10:
                    code = int(src[start:end])
            if code == 0 or code >= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                return None, pos
            char = chr(code)
        else:
            start = end
            while end < n and src[end].isascii() and src[end].isalpha():
                end += 1
            char = _NAMED.get(src[start:end])
            if char is None:
                return None, pos
        if end < n and src[end] == ";":
            return char, end + 1
        if self.strict:
            return None, pos
        return char, end

    def start_tag(self, begin: int) -> int:
        """Read `<tag attr=...>` at begin; return the index after it."""
        src = self.src
        n = len(src)
        i = begin + 1
        while i < n and src[i] not in _SPACES and src[i] != ">":
            i += 1
        if i >= n:
            raise _error(f"Unclosed start tag at byte offset {self.byte_offset(begin)}")
        tag = src[begin + 1 : i].lower()
        if tag not in _ALLOWED_TAGS:
            raise _error(f'Unsupported start tag "{tag}" at byte offset {self.byte_offset(begin)}')
        argument = ""
        while src[i] != ">":
            while i < n and src[i] in _SPACES:
                i += 1
            if i >= n:
                raise _error(_unclosed(tag, self.byte_offset(begin)))
            if src[i] == ">":
                break
            name_start = i
            while i < n and src[i] not in _SPACES and src[i] not in "=>/\"'":
                i += 1
            name = src[name_start:i]
            if not name:
                raise _error(
                    f'Empty attribute name in the tag "{tag}" at byte offset '
                    f"{self.byte_offset(begin)}"
                )
            while i < n and src[i] in _SPACES:
                i += 1
            if i >= n:
                raise _error(_unclosed(tag, self.byte_offset(begin)))
            if src[i] != "=":
                if tag == "blockquote" and name == "expandable":
                    argument = "1"
                continue
            i += 1
            while i < n and src[i] in _SPACES:
                i += 1
            if i >= n:
                raise _error(_unclosed(tag, self.byte_offset(begin)))
            if src[i] not in "'\"":
                token_start = i
                while i < n and ((src[i].isascii() and src[i].isalnum()) or src[i] in ".-"):
                    i += 1
                value = src[token_start:i].lower()
                if i < n and src[i] not in _SPACES and src[i] != ">":
                    offset = self.byte_offset(token_start)
                    raise _error(f"Unexpected end of name token at byte offset {offset}")
            else:
                quote = src[i]
                i += 1
                parts: list[str] = []
                while i < n and src[i] != quote:
                    if src[i] == "&":
                        decoded, end = self.decode_entity(i)
                        if decoded is not None:
                            parts.append(decoded)
                            i = end
                            continue
                        if self.strict:
                            raise _error(_bare_ampersand(self.byte_offset(i)))
                    parts.append(src[i])
                    i += 1
                if i < n:
                    i += 1
                value = "".join(parts)
            if i >= n:
                raise _error(f"Unclosed start tag at byte offset {self.byte_offset(begin)}")
            if tag == "a" and name == "href":
                argument = value
            elif tag == "code" and name == "class" and value.startswith("language-"):
                argument = value[9:]
            elif tag == "span" and name == "class" and value.startswith("tg-"):
                argument = value[3:]
            elif tag == "tg-emoji" and name == "emoji-id":
                argument = value
            elif tag == "blockquote" and name == "expandable":
                argument = "1"
        if tag == "span" and argument != "spoiler":
            raise _error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {self.byte_offset(begin)}'
            )
        self.stack.append((tag, argument, self.u16, self.plain_len))
        return i + 1

    def end_tag(self, begin: int) -> int:
        """Read `</tag>` at begin, emit its entity; return the index after it."""
        src = self.src
        n = len(src)
        if not self.stack:
            raise _error(f"Unexpected end tag at byte offset {self.byte_offset(begin)}")
        i = begin + 2
        while i < n and src[i] not in _SPACES and src[i] != ">":
            i += 1
        name = src[begin + 2 : i].lower()
        while i < n and src[i] in _SPACES:
            i += 1
        if i >= n or src[i] != ">":
            raise _error(f"Unclosed end tag at byte offset {self.byte_offset(begin)}")
        tag, argument, offset, plain_start = self.stack[-1]
        if name and name != tag:
            raise _error(
                f"Unmatched end tag at byte offset {self.byte_offset(begin)}, "
                f'expected "</{tag}>", found "</{name}>"'
            )
        self.stack.pop()
        length = self.u16 - offset
        if length > 0:
            self.close(tag, argument, offset, length, plain_start)
        return i + 1

    def close(self, tag: str, argument: str, offset: int, length: int, plain_start: int) -> None:
        """Turn a closed, non-empty element into its entity, as tdlib does."""
        entities = self.entities
        simple = _SIMPLE.get(tag)
        if simple is not None:
            entities.append({"type": simple, "offset": offset, "length": length})
        elif tag == "tg-emoji":
            if not argument.isdigit() or int(argument) == 0:
                raise _error("Invalid custom emoji identifier specified")
            entities.append(
                {
                    "type": "custom_emoji",
                    "offset": offset,
                    "length": length,
                    "custom_emoji_id": argument,
                }
            )
        elif tag == "a":
            url = argument or "".join(self.out)[plain_start:]
            user = _USER_LINK.match(url)
            if user:
                entities.append(
                    {
                        "type": "text_mention",
                        "offset": offset,
                        "length": length,
                        "user": {"id": int(user.group(1))},
                    }
                )
                return
            checked = _checked_link(url)
            if checked:
                entities.append(
                    {"type": "text_link", "offset": offset, "length": length, "url": checked}
                )
        elif tag == "pre":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "code"
                and last["offset"] == offset
                and last["length"] == length
                and last.get("language")
            ):
                last["type"] = "pre"
            else:
                entities.append({"type": "pre", "offset": offset, "length": length})
        elif tag == "code":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "pre"
                and last["offset"] == offset
                and last["length"] == length
                and argument
            ):
                last["language"] = argument
            else:
                entity: dict[str, Any] = {"type": "code", "offset": offset, "length": length}
                if argument:
                    entity["language"] = argument
                entities.append(entity)
        elif tag == "blockquote":
            kind = "expandable_blockquote" if argument else "blockquote"
            entities.append({"type": kind, "offset": offset, "length": length})


def _checked_link(url: str) -> str:
    """Normalise a link target roughly like tdlib; "" for one Telegram would drop."""
    url = url.strip()
    if not url or any(c in url for c in " \n\t"):
        return ""
    scheme = _SCHEME.match(url)
    if scheme:
        if scheme.group(0)[:-1].lower() not in _ALLOWED_SCHEMES:
            return ""
    elif "." in url:
        url = "http://" + url
    else:
        return ""
    if url.lower().startswith(("http://", "https://")):
        rest = url.split("://", 1)[1]
        if not rest or rest.startswith("/"):
            return ""
        if "/" not in rest and "?" not in rest and "#" not in rest:
            url += "/"
    return url
