"""Members: consent and registration, profile, language, own data, leaving; blocked chats."""

from __future__ import annotations

import json
import re
from zoneinfo import ZoneInfo

from telegram import Update
from telegram.constants import ChatMemberStatus
from telegram.ext import (
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.services import conversations, members, organizations, privacy
from bot.services.errors import StaleButton, TooYoung
from handlers.common import callback, command_text, intended_command, is_private, moim_handler

DEEP_LINK = re.compile(r"^([a-z]+)_([A-Za-z0-9_-]{1,40})$")


def register(app: MoimApplication) -> None:
    """Add the members feature's handlers."""
    features = app.runtime.features
    app.add_handler(TypeHandler(Update, gate), group=-1)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(consent_pressed, pattern=pattern("reg:agree")))
    app.add_handler(CallbackQueryHandler(decline_pressed, pattern=pattern("reg:decline")))
    app.add_handler(CallbackQueryHandler(notice_language, pattern=pattern("reg:lang")))
    app.add_handler(CallbackQueryHandler(age_pressed, pattern=pattern("reg:age")))
    app.add_handler(CommandHandler("me", show_profile))
    app.add_handler(CommandHandler("lang", choose_language))
    app.add_handler(CallbackQueryHandler(language_pressed, pattern=pattern("me:lang")))
    app.add_handler(CommandHandler("name", rename))
    app.add_handler(CommandHandler("mute", mute))
    app.add_handler(CommandHandler("unmute", unmute))
    app.add_handler(CommandHandler("mydata", export_data))
    app.add_handler(CommandHandler("forget", ask_forget))
    app.add_handler(CallbackQueryHandler(forget_pressed, pattern=pattern("me:forget")))
    app.add_handler(CommandHandler("help", show_help))
    app.add_handler(CommandHandler("cancel", cancel_flow))
    app.add_handler(ChatMemberHandler(bot_membership_changed, ChatMemberHandler.MY_CHAT_MEMBER))
    app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, chat_migrated))
    features.help_templates.insert(0, "members/help.html")
    features.command_menus.insert(0, "members/command_menu.html")


def register_fallbacks(app: MoimApplication) -> None:
    """Last in line (after every feature): free text to the open flow, unknown commands a hint."""
    app.add_handler(
        MessageHandler(filters.ChatType.PRIVATE & filters.TEXT & ~filters.COMMAND, continue_flow)
    )
    app.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE & (filters.PHOTO | filters.Document.ALL), continue_media_flow
        )
    )
    app.add_handler(MessageHandler(filters.ChatType.PRIVATE & filters.COMMAND, unknown_command))


async def gate(update: Update, context: MoimContext) -> None:
    """Before any handler: clear 'unreachable', and ask again for consent after a new notice."""
    user = update.effective_user
    member = context.member
    if user is None or member is None:
        return
    if member.unreachable_since is not None and not update.my_chat_member:
        await members.mark_reachable(context.session, user.id)
    await members.seen(context.session, member, now=context.now)
    version = context.runtime.config.bot.privacy_notice_version
    if not members.needs_consent(member, version):
        return
    # Until they accept the new notice they count as not registered.
    context.scope.member = None
    if update.my_chat_member or _is_registration_step(update) or not is_private(update):
        return
    context.answer(update)
    context.send(user.id, _notice(context, context.language, payload="", renewed=True))
    raise ApplicationHandlerStop


def _is_registration_step(update: Update) -> bool:
    message = update.effective_message
    if update.callback_query is not None:
        parsed = callback(update)
        return parsed is not None and parsed.feature == "reg"
    return bool(message and message.text and message.text.startswith("/start"))


def _notice(context: MoimContext, language: str, payload: str, *, renewed: bool = False):
    config = context.runtime.config.bot
    return context.runtime.renderer.render(
        "members/notice.html",
        language,
        version=config.privacy_notice_version,
        retention_days=config.retention_days,
        minimum_age=config.minimum_age,
        operator_name=config.operator_name,
        operator_contact=config.operator_contact,
        payload=payload,
        shown_language=language,
        renewed=renewed,
    )


@moim_handler()
async def start(update: Update, context: MoimContext) -> None:
    """/start [payload]: the privacy notice for newcomers; otherwise go where the link points."""
    if not is_private(update):
        context.reply(update, context.render("members/start_in_group.html"))
        return
    payload = command_text(update)
    if not DEEP_LINK.match(payload):
        payload = ""
    member = context.member
    version = context.runtime.config.bot.privacy_notice_version
    if members.needs_consent(member, version):
        context.reply(
            update, _notice(context, context.language, payload, renewed=member is not None)
        )
        return
    if payload:
        await open_deep_link(update, context, payload)
        return
    context.reply(update, context.render("members/welcome_back.html", member=member))


async def open_deep_link(update: Update, context: MoimContext, payload: str) -> None:
    """Continue to what a t.me link points at (org_, poll_, camp_, ...)."""
    match = DEEP_LINK.match(payload)
    target = context.runtime.features.deep_links.get(match.group(1)) if match else None
    if target is None:
        context.reply(update, context.render("members/unknown_link.html"))
        return
    # What the link points at may refuse (closed, a draft, gone): say so, but keep what came
    # before in this update, such as the registration the person just completed.
    error = await context.refusal_apart(lambda: target(update, context, match.group(2)))
    if error is not None:
        rendered = context.render(f"{error.feature}/errors.html", code=error.code, **error.params)
        context.reply(update, rendered)


def _button_language(update: Update, index: int = 0) -> tuple:
    """The pressed button's data and the language it carries (answers are in it from now)."""
    parsed = callback(update)
    language = parsed.str_arg(index) if parsed else None
    if language not in ("ko", "en"):
        raise StaleButton()
    return parsed, language


@moim_handler(private=True)
async def notice_language(update: Update, context: MoimContext) -> None:
    """Show the privacy notice in the other language."""
    parsed, language = _button_language(update)
    context.scope.language = language
    context.replace(update, _notice(context, language, parsed.str_arg(1) or ""))


@moim_handler(private=True)
async def consent_pressed(update: Update, context: MoimContext) -> None:
    """Consent given: now the age question (nothing is stored yet)."""
    parsed, language = _button_language(update)
    context.scope.language = language
    question = context.render(
        "members/age_question.html",
        minimum_age=context.runtime.config.bot.minimum_age,
        shown_language=language,
        payload=parsed.str_arg(1) or "",
    )
    context.replace(update, question)


@moim_handler(private=True)
async def decline_pressed(update: Update, context: MoimContext) -> None:
    """No consent: say that nothing was stored and how to come back."""
    _, context.scope.language = _button_language(update)
    context.replace(update, context.render("members/declined.html"))


@moim_handler(private=True)
async def age_pressed(update: Update, context: MoimContext) -> None:
    """Old enough: register (consent recorded with the notice version), then follow the link."""
    parsed, language = _button_language(update, index=1)
    answer = parsed.str_arg(0)
    if answer not in ("yes", "no"):
        raise StaleButton()
    context.scope.language = language
    config = context.runtime.config.bot
    if answer == "no":
        too_young = context.render(
            f"{TooYoung.feature}/errors.html", code=TooYoung.code, minimum_age=config.minimum_age
        )
        context.replace(update, too_young)
        return
    user = update.effective_user
    member = await members.register(
        context.session,
        telegram_user_id=user.id,
        display_name=user.full_name,
        language=language,
        notice_version=config.privacy_notice_version,
        now=context.now,
    )
    context.scope.member = member
    context.replace(update, context.render("members/registered.html", member=member))
    payload = parsed.str_arg(2) or ""
    if payload:
        await open_deep_link(update, context, payload)


@moim_handler(private=True, registered=True)
async def show_profile(update: Update, context: MoimContext) -> None:
    """/me: profile, organisations, and what each feature has on this person."""
    member = context.member
    views = await members.memberships(context.session, member)
    sections = []
    for section in context.runtime.features.me_sections:
        fragment = await section(context, member)
        if fragment:
            sections.append(fragment)
    context.reply(
        update,
        context.render("members/profile.html", member=member, views=views, sections=sections),
    )


@moim_handler(private=True, registered=True)
async def choose_language(update: Update, context: MoimContext) -> None:
    """/lang: pick Korean or English."""
    context.reply(update, context.render("members/language.html", current=context.language))


@moim_handler(private=True, registered=True)
async def language_pressed(update: Update, context: MoimContext) -> None:
    """A language button: switch, and confirm in the new language."""
    parsed = callback(update)
    language = parsed.str_arg(0) if parsed else None
    if language not in ("ko", "en"):
        raise StaleButton()
    await members.set_language(context.session, context.member, language)
    context.scope.language = language
    context.replace(update, context.render("members/language_changed.html"))


@moim_handler(private=True, registered=True)
async def rename(update: Update, context: MoimContext) -> None:
    """/name NEW NAME: change the name others (organisers) see."""
    name = command_text(update)
    if not name:
        context.reply(update, context.render("members/name_usage.html", member=context.member))
        return
    member = await members.rename(context.session, context.member, name)
    context.reply(update, context.render("members/name_changed.html", member=member))


@moim_handler(private=True, registered=True)
async def mute(update: Update, context: MoimContext) -> None:
    """/mute: no more announcements (reminders of meetings one said yes to still come)."""
    await members.set_muted(context.session, context.member, True)
    context.reply(update, context.render("members/muted.html", muted=True))


@moim_handler(private=True, registered=True)
async def unmute(update: Update, context: MoimContext) -> None:
    """/unmute: announcements again."""
    await members.set_muted(context.session, context.member, False)
    context.reply(update, context.render("members/muted.html", muted=False))


@moim_handler(private=True, registered=True)
async def export_data(update: Update, context: MoimContext) -> None:
    """/mydata: everything moim holds about this person, as a JSON file."""
    document = await privacy.export_member_data(
        context.session, context.member, hooks=context.runtime.features.privacy, now=context.now
    )
    data = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
    # The date on the person's calendar, not UTC's (09:00 in Seoul is still yesterday in UTC).
    today = context.now.astimezone(ZoneInfo(context.runtime.renderer.default_timezone))
    filename = f"moim-mydata-{today:%Y%m%d}.json"
    context.send_document(
        update.effective_chat.id,
        filename=filename,
        data=data,
        caption=context.render("members/mydata_caption.html"),
    )


@moim_handler(private=True, registered=True)
async def ask_forget(update: Update, context: MoimContext) -> None:
    """/forget: explain what deleting means and ask to confirm."""
    context.reply(update, context.render("members/forget_confirm.html"))


@moim_handler(private=True, registered=True)
async def forget_pressed(update: Update, context: MoimContext) -> None:
    """Confirmed: erase personal data (anonymous counts stay); or keep everything."""
    parsed = callback(update)
    if parsed is None or parsed.str_arg(0) != "yes":
        context.replace(update, context.render("members/forget_kept.html"))
        return
    await privacy.forget_member(
        context.session, context.member, hooks=context.runtime.features.privacy, now=context.now
    )
    context.scope.member = None
    context.replace(update, context.render("members/forgotten.html"))


@moim_handler()
async def show_help(update: Update, context: MoimContext) -> None:
    """/help: the commands this person's role allows."""
    member = context.member
    is_admin = await context.is_admin()
    is_organizer = is_admin
    if member is not None and not is_organizer:
        is_organizer = bool(await organizations.organizer_orgs(context.session, member))
    renderer = context.runtime.renderer
    parts = [
        renderer.text(
            template,
            context.language,
            registered=member is not None,
            is_organizer=is_organizer,
            is_admin=is_admin,
        )
        for template in context.runtime.features.help_templates
    ]
    context.reply(update, context.render("common/joined.html", parts=[p for p in parts if p]))


@moim_handler()
async def cancel_flow(update: Update, context: MoimContext) -> None:
    """/cancel: leave whatever multi-step flow is open."""
    ended = await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    context.reply(update, context.render("common/cancelled.html", ended=ended))


@moim_handler(private=True)
async def continue_flow(update: Update, context: MoimContext) -> None:
    """Free text: the next step of the person's open flow, or a hint."""
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    step = context.runtime.features.flows.get(state.flow) if state else None
    if step is None:
        context.reply(update, context.render("common/no_flow.html", member=context.member))
        return
    await step(update, context, state)


@moim_handler(private=True)
async def continue_media_flow(update: Update, context: MoimContext) -> None:
    """A photo or file: for the person's open flow if it takes one (minutes, announcements)."""
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    step = context.runtime.features.media_flows.get(state.flow) if state else None
    if step is None:
        context.reply(update, context.render("common/no_media.html", in_flow=state is not None))
        return
    await step(update, context, state)


@moim_handler()
async def unknown_command(update: Update, context: MoimContext) -> None:
    """A command nobody handles: the one probably meant, if any, and /help."""
    known = {
        name
        for handlers in context.application.handlers.values()
        for handler in handlers
        if isinstance(handler, CommandHandler)
        for name in handler.commands
    }
    suggestion = intended_command(update.effective_message.text or "", known)
    context.reply(update, context.render("common/unknown_command.html", suggestion=suggestion))


async def bot_membership_changed(update: Update, context: MoimContext) -> None:
    """Blocked or unblocked in a private chat; added to a group."""
    change = update.my_chat_member
    status = change.new_chat_member.status
    if change.chat.type == "private":
        if status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
            await members.mark_unreachable(context.session, change.from_user.id, now=context.now)
        elif status == ChatMemberStatus.MEMBER:
            await members.mark_reachable(context.session, change.from_user.id)
        return
    old_status = change.old_chat_member.status
    if status in (ChatMemberStatus.MEMBER, ChatMemberStatus.ADMINISTRATOR) and old_status in (
        ChatMemberStatus.LEFT,
        ChatMemberStatus.BANNED,
    ):
        context.send(change.chat.id, context.render("members/hello_group.html"))


async def chat_migrated(update: Update, context: MoimContext) -> None:
    """A group became a supergroup: its link moves to the new chat id."""
    message = update.effective_message
    if message.migrate_to_chat_id:
        await organizations.migrate_chat(
            context.session, old_chat_id=message.chat_id, new_chat_id=message.migrate_to_chat_id
        )
