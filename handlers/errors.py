"""Unexpected errors: an apology with a reference for the person, the traceback for the log."""

from __future__ import annotations

import logging
import secrets

from telegram import Update

from bot.context import Action, MoimApplication, MoimContext, current_scope
from bot.db import is_transient
from bot.render import plain_text
from bot.telegram_io import send

log = logging.getLogger("moim.errors")


def register(app: MoimApplication) -> None:
    """Install the error handler."""
    app.add_error_handler(on_error)


async def on_error(update: object, context: MoimContext) -> None:
    """Log the failure without personal data; roll back and apologise with a reference."""
    reference = secrets.token_hex(3).upper()
    update_id = update.update_id if isinstance(update, Update) else None
    if is_transient(context.error):  # the update is tried again; an error only if that fails
        log.warning(
            "database unavailable while handling update %s (%s)",
            update_id,
            type(context.error).__name__,
        )
    else:
        # The traceback names code, not people: no update contents, no message texts.
        log.error(
            "error %s while handling update %s", reference, update_id, exc_info=context.error
        )
    if not isinstance(update, Update):
        return
    try:
        scope = current_scope()
    except RuntimeError:
        return
    scope.failed = True
    scope.error = context.error
    rendered = context.runtime.renderer.render(
        "common/apology.html", scope.language, reference=reference
    )
    query = update.callback_query
    if query is not None:
        scope.failure_actions.append(
            Action(
                lambda bot: bot.answer_callback_query(
                    query.id, text=plain_text(rendered.text)[:200], show_alert=True
                )
            )
        )
    chat = update.effective_chat
    if chat is not None and (query is None or chat.type == "private"):
        scope.failure_actions.append(Action(lambda bot: send(bot, chat.id, rendered), chat.id))
