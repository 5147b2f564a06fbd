"""Turning rendered messages into Bot API calls (splitting long texts, keyboards, files)."""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from io import BytesIO
from typing import Any

from telegram import Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, RetryAfter
from telegram.ext import ExtBot
from telegram.warnings import PTBDeprecationWarning

from bot.render import TELEGRAM_CAPTION_LIMIT, Rendered, split_html, visible_length

log = logging.getLogger(__name__)
NO_PREVIEW = {"is_disabled": True}
TIMEOUTS = ("read_timeout", "write_timeout", "connect_timeout", "pool_timeout")


def markup(rendered: Rendered) -> dict | None:
    """The inline keyboard of a rendered message as Bot API JSON, if it has buttons."""
    if not rendered.buttons:
        return None
    return {
        "inline_keyboard": [
            [
                {"text": b.text, "url": b.url}
                if b.url
                else {"text": b.text, "callback_data": b.callback_data}
                for b in row
            ]
            for row in rendered.buttons
        ]
    }


async def call(bot: ExtBot, method: str, params: dict[str, Any], **timeouts: Any) -> Any:
    """Make a Bot API call and return Telegram's answer as JSON, not as PTB objects.

    Most replies are never looked at again, and turning the returned message into PTB objects
    was a good part of a reply's cost. PTB's own path is kept for everything else: defaults,
    the rate limiter and the mapping of errors to exceptions (Forbidden, RetryAfter, ...).
    """
    # Bot._post is the step every PTB method ends in (pinned: python-telegram-bot <23).
    return await bot._post(method, params, **timeouts)


async def send(
    bot: ExtBot, chat_id: int | str, rendered: Rendered, *, parse: bool = True, **options
) -> list[Message]:
    """Send a rendered message; a long one goes in parts, the keyboard on the last part.

    With ``parse=False`` nothing is made of Telegram's answer and the list is empty.
    """
    timeouts = {key: options.pop(key) for key in TIMEOUTS if key in options}
    parts = split_html(rendered.text)
    sent = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        answer = await call(
            bot,
            "sendMessage",
            {
                "chat_id": chat_id,
                "text": part,
                "parse_mode": ParseMode.HTML,
                "reply_markup": markup(rendered) if last else None,
                "link_preview_options": NO_PREVIEW,
                **options,
            },
            **timeouts,
        )
        if parse:
            sent.append(Message.de_json(answer, bot))
    return sent


def retry_after_seconds(error: RetryAfter) -> float:
    """How long Telegram told us to wait, in seconds.

    PTB 22 gives an int with a deprecation warning (a timedelta in its next major version, or
    now with PTB_TIMEDELTA=1); either is read here, without the warning in every 429's log.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def is_not_modified(error: BadRequest) -> bool:
    """Telegram refuses an edit that changes nothing; for us that edit succeeded."""
    return "not modified" in error.message.lower()


async def edit(bot: ExtBot, chat_id: int | str, message_id: int, rendered: Rendered) -> None:
    """Replace a message's text and keyboard (a no-op edit counts as done)."""
    text = split_html(rendered.text)[0]
    try:
        await call(
            bot,
            "editMessageText",
            {
                "chat_id": chat_id,
                "message_id": message_id,
                "text": text,
                "parse_mode": ParseMode.HTML,
                "reply_markup": markup(rendered),
                "link_preview_options": NO_PREVIEW,
            },
        )
    except BadRequest as error:
        if not is_not_modified(error):
            raise


async def answer_query(
    bot: ExtBot, query_id: str, text: str | None, *, alert: bool = False, url: str | None = None
) -> None:
    """Answer a pressed button (stops its spinner), with a notice, an alert or a link."""
    await call(
        bot,
        "answerCallbackQuery",
        {"callback_query_id": query_id, "text": text, "show_alert": alert or None, "url": url},
    )


async def send_document(
    bot: ExtBot,
    chat_id: int | str,
    *,
    filename: str,
    data: bytes | str,
    caption: Rendered | None = None,
    **options,
) -> Message:
    """Send a file (bytes, or a Telegram file id to resend) with an optional caption."""
    caption_text = caption.text if caption else None
    if caption_text and visible_length(caption_text) > TELEGRAM_CAPTION_LIMIT:
        caption_text = None  # too long for a caption: the document goes alone
    document = BytesIO(data) if isinstance(data, bytes) else data
    return await bot.send_document(
        chat_id,
        document=document,
        filename=filename if isinstance(data, bytes) else None,
        caption=caption_text,
        parse_mode=ParseMode.HTML if caption_text else None,
        reply_markup=markup(caption) if caption else None,
        **options,
    )


async def send_photo(
    bot: ExtBot,
    chat_id: int | str,
    *,
    data: bytes | str,
    caption: Rendered | None = None,
    **options,
) -> Message:
    """Send an image (bytes, or a Telegram file id) with an optional caption."""
    caption_text = caption.text if caption else None
    if caption_text and visible_length(caption_text) > TELEGRAM_CAPTION_LIMIT:
        caption_text = None
    photo = BytesIO(data) if isinstance(data, bytes) else data
    return await bot.send_photo(
        chat_id,
        photo=photo,
        caption=caption_text,
        parse_mode=ParseMode.HTML if caption_text else None,
        reply_markup=markup(caption) if caption else None,
        **options,
    )
