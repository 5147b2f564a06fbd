"""Turning rendered messages into Bot API calls (splitting long texts, keyboards, files)."""

from __future__ import annotations

import logging
from io import BytesIO

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import ExtBot

from bot.render import TELEGRAM_CAPTION_LIMIT, Rendered, split_html, visible_length

log = logging.getLogger(__name__)
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def markup(rendered: Rendered) -> InlineKeyboardMarkup | None:
    """The inline keyboard of a rendered message, if it has buttons."""
    if not rendered.buttons:
        return None
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(b.text, url=b.url)
                if b.url
                else InlineKeyboardButton(b.text, callback_data=b.callback_data)
                for b in row
            ]
            for row in rendered.buttons
        ]
    )


async def send(bot: ExtBot, chat_id: int | str, rendered: Rendered, **options) -> list[Message]:
    """Send a rendered message; a long one goes in parts, the keyboard on the last part."""
    parts = split_html(rendered.text)
    sent = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        sent.append(
            await bot.send_message(
                chat_id,
                part,
                parse_mode=ParseMode.HTML,
                reply_markup=markup(rendered) if last else None,
                link_preview_options=NO_PREVIEW,
                **options,
            )
        )
    return sent


def is_not_modified(error: BadRequest) -> bool:
    """Telegram refuses an edit that changes nothing; for us that edit succeeded."""
    return "not modified" in error.message.lower()


async def edit(
    bot: ExtBot, chat_id: int | str, message_id: int, rendered: Rendered
) -> Message | bool:
    """Replace a message's text and keyboard (a no-op edit counts as done)."""
    text = split_html(rendered.text)[0]
    try:
        return await bot.edit_message_text(
            text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=markup(rendered),
            link_preview_options=NO_PREVIEW,
        )
    except BadRequest as error:
        if is_not_modified(error):
            return True
        raise


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
