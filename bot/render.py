"""Every text a person reads: Jinja2 templates (Telegram HTML, autoescaped) with translations."""

from __future__ import annotations

import datetime as dt
import functools
import html as html_lib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel import Locale
from babel.dates import format_datetime
from babel.numbers import NumberPattern, format_decimal, parse_pattern
from markupsafe import Markup

from bot.callbacks import encode
from bot.i18n import Catalog, Catalogs

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024

DATETIME_PATTERNS = {
    "ko": {
        "datetime": "M월 d일 (E) HH:mm",
        "date": "M월 d일 (E)",
        "time": "HH:mm",
        "datetime_year": "yyyy년 M월 d일 (E) HH:mm",
        "date_year": "yyyy년 M월 d일 (E)",
    },
    "en": {
        "datetime": "EEE, MMM d, HH:mm",
        "date": "EEE, MMM d",
        "time": "HH:mm",
        "datetime_year": "EEE, MMM d, yyyy, HH:mm",
        "date_year": "EEE, MMM d, yyyy",
    },
}


@dataclass(frozen=True)
class Button:
    """One inline keyboard button: a callback or a link."""

    text: str
    callback_data: str | None = None
    url: str | None = None


@dataclass
class Rendered:
    """A message ready to send: Telegram HTML text and keyboard rows."""

    text: str
    buttons: list[list[Button]] = field(default_factory=list)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-able form, for the outbox."""
        return {
            "text": self.text,
            "buttons": [
                [{"text": b.text, "callback_data": b.callback_data, "url": b.url} for b in row]
                for row in self.buttons
            ],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Rendered:
        """Rebuild from :meth:`to_payload`."""
        return cls(
            text=payload["text"],
            buttons=[[Button(**button) for button in row] for row in payload.get("buttons", [])],
        )


class Keyboard:
    """Collects buttons while a template renders; templates call it with ``{% do kb... %}``."""

    def __init__(self) -> None:
        self.rows: list[list[Button]] = [[]]

    def button(self, text: str, action: str, *args: object) -> str:
        """Add a callback button to the current row: ``kb.button(_("Vote"), "poll:vote", 4)``."""
        self.rows[-1].append(Button(text=_plain(text), callback_data=encode(action, *args)))
        return ""

    def url(self, text: str, url: str) -> str:
        """Add a link button on the current row."""
        self.rows[-1].append(Button(text=_plain(text), url=str(url)))
        return ""

    def row(self) -> str:
        """Start a new row of buttons."""
        if self.rows[-1]:
            self.rows.append([])
        return ""

    def result(self) -> list[list[Button]]:
        """The non-empty rows."""
        return [row for row in self.rows if row]


def _plain(text: str) -> str:
    """Button labels are plain text: undo the HTML escaping of translated strings."""
    return Markup(text).unescape() if isinstance(text, Markup) else str(text)


_BLOCK_TAG = re.compile(r"\{%.*?%\}", re.S)


def keep_text_line_breaks(source: str) -> str:
    """Make templates read as written: a line with text keeps its line break, a line of only
    control tags ({% if %}, {% do kb.button(...) %}) disappears.

    Jinja's trim_blocks would also eat the line break after a text line that ends in a tag
    ("• {% trans %}...{% endtrans %}"); such tags get a "+" so it stays.
    """
    lines = source.split("\n")
    for index, line in enumerate(lines):
        stripped = line.rstrip()
        if not stripped.endswith("%}") or stripped.endswith(("+%}", "-%}")):
            continue
        has_text = bool(_BLOCK_TAG.sub("", stripped).strip())
        if has_text or stripped.lstrip().startswith("{% endtrans"):
            lines[index] = stripped[:-2] + "+%}"
    return "\n".join(lines)


class TemplateLoader(jinja2.FileSystemLoader):
    """Loads templates with :func:`keep_text_line_breaks` applied."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return keep_text_line_breaks(source), filename, uptodate


class Renderer:
    """Renders templates in a language; one Jinja2 environment per language."""

    def __init__(
        self,
        catalogs: Catalogs | None = None,
        template_dir: Path = TEMPLATE_DIR,
        default_timezone: str = "Asia/Seoul",
    ) -> None:
        self.catalogs = catalogs or Catalogs()
        self.template_dir = template_dir
        self.default_timezone = default_timezone
        self.bot_username = "moim_bot"
        self.environments: dict[tuple[str, str], jinja2.Environment] = {}

    def environment(self, language: str, feature: str) -> jinja2.Environment:
        """The environment for templates of ``feature`` in ``language`` (made on first use)."""
        key = (language, feature)
        environment = self.environments.get(key)
        if environment is None:
            catalog = self.catalogs.for_feature(language, feature)
            environment = self.environments[key] = self._environment(catalog, self.template_dir)
        return environment

    def _environment(self, catalog: Catalog, template_dir: Path) -> jinja2.Environment:
        environment = jinja2.Environment(
            loader=TemplateLoader(str(template_dir)),
            # Telegram messages (.html) are escaped; terminal texts (.txt, the sandbox) are not.
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), disabled_extensions=("txt",), default=True
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
            # Templates ship with the code: no file check on every message.
            auto_reload=False,
            extensions=["jinja2.ext.i18n", "jinja2.ext.do", "jinja2.ext.loopcontrols"],
        )
        # Whitespace inside {% trans %} collapses, so translators see one clean line.
        environment.policies["ext.i18n.trimmed"] = True
        environment.install_gettext_callables(  # type: ignore[attr-defined]
            catalog.gettext,
            catalog.ngettext,
            newstyle=True,
            pgettext=catalog.pgettext,
            npgettext=catalog.npgettext,
        )
        language = catalog.language
        environment.filters.update(
            datetime=lambda value, tz=None, year=False: self.format_moment(
                value, language, tz, "datetime_year" if year else "datetime"
            ),
            date=lambda value, tz=None, year=False: self.format_moment(
                value, language, tz, "date_year" if year else "date"
            ),
            time=lambda value, tz=None: self.format_moment(value, language, tz, "time"),
            number=lambda value: format_decimal(value, locale=_locale(language)),
            percent=lambda value, digits=0: _percent_pattern(digits).apply(
                value, _locale(language)
            ),
            bar=progress_bar,
        )
        environment.globals.update(
            language=language,
            deep_link=self.deep_link,
        )
        return environment

    def deep_link(self, payload: str) -> str:
        """A t.me link that opens the bot and sends /start with the payload."""
        return f"https://t.me/{self.bot_username}?start={payload}"

    def format_moment(self, value: dt.datetime, language: str, tz: str | None, kind: str) -> str:
        """Format an aware datetime in a time zone for a language ("12월 19일 (목) 18:00")."""
        zone = ZoneInfo(tz or self.default_timezone)
        return format_datetime(
            value.astimezone(zone), DATETIME_PATTERNS[language][kind], locale=language
        )

    def language(self, language: str | None) -> str:
        """A supported language, falling back to the default (Korean)."""
        languages = self.catalogs.languages
        return language if language in languages else languages[0]

    def render(self, template: str, language: str | None, **context: Any) -> Rendered:
        """Render ``template`` (e.g. "members/notice.html") into text and buttons."""
        environment = self.environment(self.language(language), template.split("/", 1)[0])
        keyboard = Keyboard()
        text = environment.get_template(template).render(kb=keyboard, **context)
        return Rendered(text=tidy(text), buttons=keyboard.result())

    def text(self, template: str, language: str | None, **context: Any) -> str:
        """Render a template that has no buttons (document captions, fragments)."""
        return self.render(template, language, **context).text


@functools.cache
def _locale(language: str) -> Locale:
    """Babel's locale, parsed once (cards format numbers on every tap)."""
    return Locale.parse(language)


@functools.cache
def _percent_pattern(digits: int) -> NumberPattern:
    """A percentage with ``digits`` decimals (12% or 12.5%), parsed once."""
    return parse_pattern("#,##0" + ("." + "0" * digits if digits else "") + "%")


def tidy(text: str) -> str:
    """Trim trailing spaces and at most one blank line in a row, as a person would write."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def plain_text(html: str) -> str:
    """The text a person sees, without tags and entities (for alerts and button answers)."""
    return html_lib.unescape(_TAG.sub("", html))


def progress_bar(ratio: float, width: int = 10) -> str:
    """A text progress bar: ▰▰▰▱▱▱▱▱▱▱ for 0.3."""
    ratio = max(0.0, min(1.0, float(ratio)))
    filled = round(ratio * width)
    return "▰" * filled + "▱" * (width - filled)


# --- splitting long HTML -----------------------------------------------------------------------

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);")


def visible_length(html: str) -> int:
    """Length Telegram counts: the text after parsing tags and entities, in UTF-16 units."""
    text = _TAG.sub("", html)
    text = _ENTITY.sub("x", text)
    return len(text.encode("utf-16-le")) // 2


def split_html(html: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split Telegram HTML into parts under ``limit`` visible characters.

    Splits at paragraph, then line, then word boundaries, never inside a tag or an entity;
    tags open at a split are closed at the end of one part and reopened in the next.
    """
    if visible_length(html) <= limit:
        return [html]
    tokens = _tokenize(html)
    parts: list[str] = []
    current: list[str] = []
    current_length = 0
    open_tags: list[tuple[str, str]] = []  # (name, full opening tag)
    last_break: int | None = None  # index in current after a good break point
    break_tags: list[tuple[str, str]] = []

    def flush(upto: int | None = None) -> None:
        nonlocal current, current_length, last_break
        cut = len(current) if upto is None else upto
        head, tail = current[:cut], current[cut:]
        tags_at_cut = open_tags if upto is None else break_tags
        closing = "".join(f"</{name}>" for name, _ in reversed(tags_at_cut))
        parts.append(tidy("".join(head) + closing))
        reopened = [tag for _, tag in tags_at_cut]
        current = reopened + tail
        current_length = sum(_token_length(token) for token in current)
        last_break = None

    for kind, token in tokens:
        if kind == "tag":
            closing, name = token[1] == "/", _TAG.match(token).group(2).lower()
            if closing:
                if open_tags and open_tags[-1][0] == name:
                    open_tags.pop()
            else:
                open_tags.append((name, token))
            current.append(token)
            continue
        length = _token_length(token)
        if current_length + length > limit:
            if last_break is not None and last_break > len(break_tags):
                flush(last_break)
            else:
                flush()
        current.append(token)
        current_length += length
        if kind == "space":
            last_break = len(current)
            break_tags = list(open_tags)
    if any(_token_length(token) for token in current):
        parts.append(tidy("".join(current)))
    return [part for part in parts if part]


def _tokenize(html: str) -> list[tuple[str, str]]:
    """Tags, whitespace runs and words (a word never longer than 200 characters)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    for match in _TAG.finditer(html):
        tokens.extend(_words(html[position : match.start()]))
        tokens.append(("tag", match.group(0)))
        position = match.end()
    tokens.extend(_words(html[position:]))
    return tokens


def _words(text: str) -> list[tuple[str, str]]:
    result = []
    for piece in re.findall(r"\s+|[^\s]+", text):
        if piece.isspace():
            result.append(("space", piece))
            continue
        # Cut very long words, but never inside an entity like &amp;.
        start = 0
        while start < len(piece):
            end = min(start + 200, len(piece))
            amp = piece.rfind("&", start, end)
            if amp != -1 and ";" not in piece[amp:end] and end < len(piece):
                semicolon = piece.find(";", amp)
                if semicolon != -1 and semicolon - amp <= 10:
                    end = amp if amp > start else semicolon + 1
            result.append(("word", piece[start:end]))
            start = end
    return result


def _token_length(token: str) -> int:
    if token.startswith("<") and _TAG.fullmatch(token):
        return 0
    return visible_length(token)
