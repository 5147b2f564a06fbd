"""What every feature's handlers share: guards, friendly domain errors, picking an organisation."""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from telegram import Update
from telegram.constants import ChatType

from bot.callbacks import Callback, decode
from bot.context import MoimContext
from bot.services import audit, conversations, organizations
from bot.services.errors import (
    DomainError,
    NotAdmin,
    NotRegistered,
    PermissionDenied,
    StaleButton,
)
from models import ConversationState, Organization, Role

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]


def is_private(update: Update) -> bool:
    """True in a one-to-one chat with the bot."""
    return update.effective_chat is not None and update.effective_chat.type == ChatType.PRIVATE


def command_text(update: Update) -> str:
    """What follows the command on its line (``/new_poll a | b`` → ``a | b``)."""
    message = update.effective_message
    text = (message.text or message.caption or "") if message else ""
    if not text.startswith("/"):
        return text.strip()
    parts = text.split(maxsplit=1)
    return parts[1].strip() if len(parts) > 1 else ""


def intended_command(text: str, known: Iterable[str]) -> str | None:
    """The command someone most likely meant by one nobody handles: "/newpoll" or
    "/new poll" for /new_poll, "/new_pol" too; None if nothing is close."""
    words = text.lstrip("/").split()
    if not words:
        return None
    typed = words[0].split("@")[0].lower().replace("_", "")
    plain = {name.replace("_", ""): name for name in known}
    joined = typed + words[1].lower() if len(words) > 1 else typed  # "/new poll"
    for guess in (typed, joined):
        if guess in plain:
            return plain[guess]
    close = difflib.get_close_matches(typed, plain, n=1, cutoff=0.8)
    return plain[close[0]] if close else None


def callback(update: Update) -> Callback | None:
    """The pressed button's parsed data (None if it is not valid moim data)."""
    query = update.callback_query
    return decode(query.data) if query else None


async def flow_button(
    update: Update, context: MoimContext, flow: str
) -> tuple[Callback, ConversationState]:
    """The pressed button of a step-by-step flow, with the flow's saved state; a button of a
    flow that is over, or of another flow, is stale."""
    parsed = callback(update)
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    if state is None or state.flow != flow or parsed is None:
        raise StaleButton()
    return parsed, state


def moim_handler(
    *, private: bool = False, registered: bool = False, admin: bool = False
) -> Callable[[Handler], Handler]:
    """Wrap a handler: check where and by whom it is used; turn domain errors into replies."""

    def wrap(func: Handler) -> Handler:
        @functools.wraps(func)
        async def wrapper(update: Update, context: MoimContext, *extra: Any) -> None:
            try:
                if private and not is_private(update):
                    context.answer(update)
                    context.reply(update, context.render("common/private_only.html"))
                    return
                if registered and context.member is None:
                    raise NotRegistered()
                if admin and not await context.is_admin():
                    raise NotAdmin()
                await func(update, context, *extra)
            except DomainError as error:
                await reply_domain_error(update, context, error)

        return wrapper

    return wrap


async def reply_domain_error(update: Update, context: MoimContext, error: DomainError) -> None:
    """Undo what the failed action wrote, log refusals, and tell the person kindly."""
    scope = context.scope
    member_id = scope.member.id if scope.member is not None else None
    await context.undo()
    if isinstance(error, PermissionDenied):
        await audit.record(
            context.session,
            action=error.params.get("action", _command_name(update)),
            now=context.now,
            actor_member_id=member_id,
            target=_command_name(update),
            outcome="refused",
            details={"code": error.code},
        )
    rendered = context.render(f"{error.feature}/errors.html", code=error.code, **error.params)
    if update.callback_query is not None and isinstance(error, NotRegistered):
        # They may never have opened a chat with the bot: let Telegram open it for them, with
        # a payload that brings them back to what they tapped once they have registered.
        payload = error.params.get("payload", "")
        context.answer(update, url=context.runtime.renderer.deep_link(payload or "start"))
    elif update.callback_query is not None:
        context.answer(update, rendered.text, alert=True)
        if rendered.buttons:
            context.send(update.effective_user.id, rendered)
    else:
        context.reply(update, rendered)


def _command_name(update: Update) -> str:
    query = update.callback_query
    if query is not None:
        parsed = decode(query.data)
        return f"button:{parsed.action}" if parsed else "button:invalid"
    message = update.effective_message
    text = message.text if message and message.text else ""
    return text.split(maxsplit=1)[0][:64] if text.startswith("/") else "message"


async def resolve_org(
    update: Update,
    context: MoimContext,
    slug: str | None,
    *,
    choose_action: str,
    minimum: Role = Role.ORGANIZER,
    action: str,
) -> Organization | None:
    """The organisation an organiser command is about.

    Named by slug; else the organisation linked to this group; else the only one the person
    organises. With several, a message with one button per organisation is sent (each button
    runs ``choose_action`` with the organisation's id) and None is returned.
    """
    member = context.member
    if member is None:
        raise NotRegistered()
    session = context.session
    is_admin = await context.is_admin()
    org: Organization | None = None
    if slug:
        org = await organizations.by_slug(session, slug)
    elif not is_private(update):
        linked = await organizations.linked_chat(session, update.effective_chat.id)
        if linked is not None:
            org = await organizations.by_id(session, linked.organization_id)
    if org is None:
        choices = await organizations.organizer_orgs(session, member, is_bot_admin=is_admin)
        if minimum == Role.ADMIN and not is_admin:
            choices = [
                o
                for o in choices
                if (m := await organizations.membership_of(session, member, o))
                and m.role == Role.ADMIN
            ]
        if not choices:
            raise PermissionDenied(action=action)
        if len(choices) > 1:
            context.reply(
                update,
                context.render("common/choose_org.html", orgs=choices, action=choose_action),
            )
            return None
        org = choices[0]
    await organizations.require_organizer(
        session,
        member=member,
        org=org,
        now=context.now,
        action=action,
        is_bot_admin=is_admin,
        minimum=minimum,
    )
    return org


async def org_from_button(
    update: Update,
    context: MoimContext,
    organization_id: int | None,
    *,
    action: str,
    minimum: Role = Role.ORGANIZER,
) -> Organization:
    """The organisation a pressed button names, after checking the presser may act in it."""
    if organization_id is None:
        raise StaleButton()
    member = context.member
    if member is None:
        raise NotRegistered()
    org = await organizations.by_id(context.session, organization_id)
    await organizations.require_organizer(
        context.session,
        member=member,
        org=org,
        now=context.now,
        action=action,
        is_bot_admin=await context.is_admin(),
        minimum=minimum,
    )
    return org
