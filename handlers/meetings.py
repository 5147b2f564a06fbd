"""Meetings: /new_meeting, the card with 참석 / 불참 / 미정, /meetings, /calendar, reminders,
check-in (button, QR code, typed code), minutes, and the organiser's view of a meeting."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.render import Rendered
from bot.runtime import Audience, CardKind, CardRequest
from bot.services import conversations, meetings, members, organizations, recurrence
from bot.services.errors import NotRegistered, StaleButton
from bot.services.privacy import PrivacyHook
from handlers.cards import show_card
from handlers.common import (
    callback,
    command_text,
    flow_button,
    is_private,
    moim_handler,
    org_from_button,
    resolve_org,
)
from handlers.members import continue_flow
from models import CheckinMethod, ReminderAudience

FLOW = "new_meeting"
MOVE_FLOW = "meeting_move"
MINUTES_FLOW = "meeting_minutes"
CODE_TEXT = re.compile(r"^\s*\d{3}\s?\d{3}\s*$")
REPEAT_CHOICES = ("once", "weekly", "biweekly", "monthly")
# Offsets an organiser can switch on and off with a tap (minutes before the start).
REMINDER_CHOICES = (10080, 4320, 1440, 180, 60, 30, 10)


def register(app: MoimApplication) -> None:
    """Add the meetings feature's commands, buttons, jobs, card, audience and privacy hook."""
    runtime = app.runtime
    features = runtime.features
    app.add_handler(CommandHandler("new_meeting", new_meeting))
    app.add_handler(CommandHandler("meetings", list_meetings))
    app.add_handler(CommandHandler("calendar", send_calendar))
    app.add_handler(CommandHandler("checkin", checkin_command))
    buttons = {
        "newmtg": new_meeting_button,
        "mtg:rsvp": rsvp_pressed,
        "mtg:ics": ics_pressed,
        "mtg:cal": calendar_pressed,
        "mtg:open": open_pressed,
        "mtg:here": here_pressed,
        "mtg:manage": manage_pressed,
        "mtg:move": move_pressed,
        "mtg:cancel": cancel_pressed,
        "mtg:remind": reminders_pressed,
        "mtg:rem": reminder_toggled,
        "mtg:aud": audience_pressed,
        "mtg:checkin": checkin_opened,
        "mtg:close": checkin_closed,
        "mtg:minutes": minutes_pressed,
        "mtg:minsend": minutes_confirmed,
        "mtg:export": export_pressed,
    }
    for action, handler in buttons.items():
        app.add_handler(CallbackQueryHandler(handler, pattern=pattern(action)))
    app.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE & filters.TEXT & filters.Regex(CODE_TEXT), typed_code
        )
    )
    features.flows[FLOW] = new_meeting_text
    features.flows[MOVE_FLOW] = move_text
    features.flows[MINUTES_FLOW] = minutes_text
    features.media_flows[MINUTES_FLOW] = document_sent
    features.deep_links["meet"] = open_meeting_link
    features.deep_links["checkin"] = checkin_link
    features.me_sections.append(me_section)
    features.help_templates.append("meetings/help.html")
    features.command_menus.append("meetings/command_menu.html")
    features.add_job(meetings.REMIND_JOB, run_reminder)
    features.add_job(meetings.EXTEND_JOB, run_extension)
    features.add_job(meetings.CHECKIN_CLOSE_JOB, run_checkin_close)
    features.cards["meeting"] = CardKind(
        kind="meeting",
        postable=lambda session, org: meetings.postable(session, org, now=runtime.now()),
        owner=meetings.meeting_owner,
        render=render_card,
        label_template="meetings/label.html",
    )
    features.audiences["meeting"] = Audience(
        key="meeting",
        variants=("yes", "maybe", "no"),
        items=lambda session, org: meetings.audience_items(session, org, now=runtime.now()),
        member_ids=meetings.audience_member_ids,
        label_template="meetings/audience_label.html",
    )
    features.privacy.append(
        PrivacyHook(name="meetings", export=meetings.export_member, erase=meetings.erase_member)
    )


def _settings(context):
    return context.runtime.config.meetings


async def _as_organizer(context: MoimContext, org, action: str) -> None:
    """Go on only if the person organises ``org`` (otherwise refused, and audited)."""
    await organizations.require_organizer(
        context.session,
        member=context.member,
        org=org,
        now=context.now,
        action=action,
        is_bot_admin=await context.is_admin(),
    )


def _number(update: Update, index: int = 0) -> int:
    """The pressed button's ``index``-th argument as a number (a stale button if it is not)."""
    parsed = callback(update)
    value = parsed.int_arg(index) if parsed else None
    if value is None:
        raise StaleButton()
    return value


# --- creating a meeting ------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def new_meeting(update: Update, context: MoimContext) -> None:
    """/new_meeting: step by step; ``/new_meeting TITLE | WHEN | ...`` creates it at once."""
    state = await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=FLOW,
        step="org",
        data={"line": command_text(update)},
        now=context.now,
    )
    org = await resolve_org(
        update, context, None, choose_action="newmtg:org", action="meeting.create"
    )
    if org is not None:
        await _org_chosen(update, context, state, org)


async def _org_chosen(update: Update, context: MoimContext, state, org) -> None:
    """The organisation is known: create at once (one-line form) or ask for the title."""
    line = state.data.get("line", "")
    if line:
        draft = meetings.parse_one_line(line, now=context.now, timezone=org.timezone)
        await _create(update, context, org, draft)
        return
    await conversations.advance(
        context.session, state, step="title", now=context.now, org_id=org.id
    )
    context.reply(update, context.render("meetings/ask.html", step="title", org=org))


async def _create(update: Update, context: MoimContext, org, draft) -> None:
    meeting = await meetings.create_meeting(
        context.session,
        actor=context.member,
        org=org,
        draft=draft,
        reminder_minutes=_settings(context).reminder_minutes,
        now=context.now,
        ahead=_settings(context).scheduled_ahead,
        is_bot_admin=await context.is_admin(),
    )
    await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    groups = await organizations.posting_chats(context.session, org)
    context.reply(
        update, context.render("meetings/created.html", meeting=meeting, org=org, groups=groups)
    )
    await show_card(context, "meeting", meeting.id, update.effective_chat.id)


async def _draft_org(context: MoimContext, state):
    return await organizations.by_id(context.session, state.data["org_id"])


@moim_handler(private=True, registered=True)
async def new_meeting_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer in /new_meeting: title, time, length, place, end of the series, agenda."""
    text = update.effective_message.text
    step = state.step
    if step == "org":
        context.reply(update, context.render("meetings/use_buttons.html"))
        return
    org = await _draft_org(context, state)
    draft = meetings.MeetingDraft.from_data(state.data.get("draft", {}))
    now = context.now
    if step == "title":
        draft.title = meetings.clean_title(text)
        step = "when"
    elif step == "when":
        draft.starts_at = meetings.read_start(text, now=now, timezone=org.timezone)
        step = "duration"
    elif step == "duration":
        draft.duration_minutes = meetings.read_duration(text)
        step = "place"
    elif step == "place":
        draft.place, draft.link = meetings.read_place(text)
        step = "repeat"
    elif step == "until":
        draft.until = meetings.read_until(
            text, now=now, timezone=org.timezone, start=draft.starts_at
        )
        step = "agenda"
    elif step == "agenda":
        draft.agenda = meetings.read_agenda(text)
        step = "preview"
    else:
        context.reply(update, context.render("meetings/use_buttons.html"))
        return
    await _ask(update, context, state, org, draft, step)


async def _ask(update: Update, context: MoimContext, state, org, draft, step: str) -> None:
    """Save the draft, move to ``step`` and ask its question (or show the preview)."""
    await conversations.advance(
        context.session, state, step=step, now=context.now, draft=draft.to_data()
    )
    values: dict[str, Any] = {"step": step, "org": org, "draft": draft}
    if step == "preview":
        values["rule"] = recurrence.describe(draft.rule(org.timezone))
        values["reminders"] = _settings(context).reminder_minutes
    if step == "repeat":
        local = recurrence.to_local(draft.starts_at, org.timezone)
        values["weekday"] = local.weekday()
        values["ordinal"] = recurrence.month_ordinal(local.date())
    template = "meetings/preview.html" if step == "preview" else "meetings/ask.html"
    context.reply(update, context.render(template, **values))


@moim_handler(private=True, registered=True)
async def new_meeting_button(update: Update, context: MoimContext) -> None:
    """A button in /new_meeting: organisation, length, repeat, no end, skip, create, cancel."""
    parsed, state = await flow_button(update, context, FLOW)
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    verb, value = parsed.verb, parsed.str_arg(0)
    context.answer(update)
    if verb == "cancel":
        await conversations.finish(context.session, chat_id=chat_id, user_id=user_id)
        context.reply(update, context.render("common/cancelled.html", ended=True))
        return
    if verb == "org" and state.step == "org":
        org = await org_from_button(update, context, parsed.int_arg(0), action="meeting.create")
        await _org_chosen(update, context, state, org)
        return
    if state.step == "org":
        raise StaleButton()
    org = await _draft_org(context, state)
    draft = meetings.MeetingDraft.from_data(state.data.get("draft", {}))
    if verb == "dur" and state.step == "duration" and parsed.int_arg(0):
        draft.duration_minutes = meetings.check_duration(dt.timedelta(minutes=parsed.int_arg(0)))
        await _ask(update, context, state, org, draft, "place")
    elif verb == "skip" and state.step in ("place", "agenda"):
        await _ask(
            update, context, state, org, draft, "repeat" if state.step == "place" else "preview"
        )
    elif verb == "rep" and state.step == "repeat" and value in REPEAT_CHOICES:
        draft.repeat = "" if value == "once" else value
        await _ask(update, context, state, org, draft, "until" if draft.repeat else "agenda")
    elif verb == "noend" and state.step == "until":
        draft.until = None
        await _ask(update, context, state, org, draft, "agenda")
    elif verb == "create" and state.step == "preview":
        await _create(update, context, org, draft)
    else:
        raise StaleButton()


# --- the card and answering --------------------------------------------------------------------


async def render_card(request: CardRequest) -> Rendered | None:
    """The meeting's card as it should look now (in a group, or in someone's private chat)."""
    private = request.chat_id > 0
    viewer = await members.by_telegram_id(request.session, request.chat_id) if private else None
    is_admin = private and await members.is_admin(
        request.session, request.chat_id, request.runtime.config.bot.admins
    )
    try:
        shown = await meetings.view(
            request.session, request.item_id, now=request.now, viewer=viewer, is_bot_admin=is_admin
        )
    except meetings.MeetingNotFound:
        return None
    return request.render("meetings/card.html", view=shown, private=private, now=request.now)


async def _private_card(
    context: MoimContext,
    meeting_id: int,
    occurrence_id: int | None = None,
    *,
    loaded: tuple[Any, Any, Any] | None = None,
) -> Rendered:
    """The card as this person sees it in their private chat (their answer, their role)."""
    shown = await meetings.view(
        context.session,
        meeting_id,
        now=context.now,
        viewer=context.member,
        occurrence_id=occurrence_id,
        is_bot_admin=await context.is_admin(),
        loaded=loaded,
    )
    return context.render("meetings/card.html", view=shown, private=True, now=context.now)


async def open_meeting_link(update: Update, context: MoimContext, arg: str) -> None:
    """Deep link meet_<id>: the meeting's card, privately, with the person's own answer."""
    if not arg.isdigit():
        raise StaleButton()
    context.reply(update, await _private_card(context, int(arg)))


@moim_handler(private=True, registered=True)
async def open_pressed(update: Update, context: MoimContext) -> None:
    """A meeting chosen from /meetings: its card."""
    meeting_id = _number(update)
    context.answer(update)
    context.reply(update, await _private_card(context, meeting_id, callback(update).int_arg(1)))


async def _require_registered(context: MoimContext, occurrence_id: int | None) -> None:
    """Someone unregistered tapped a card in a group: bring them back to this meeting."""
    if context.member is not None:
        return
    payload = ""
    if occurrence_id is not None:
        try:
            _, meeting, _ = await meetings.get_occurrence(context.session, occurrence_id)
            payload = f"meet_{meeting.id}"
        except StaleButton:
            payload = ""
    raise NotRegistered(payload=payload)


@moim_handler()
async def rsvp_pressed(update: Update, context: MoimContext) -> None:
    """참석 / 불참 / 미정 on a card or a reminder."""
    parsed = callback(update)
    occurrence_id = parsed.int_arg(0) if parsed else None
    answer = meetings.ANSWER_CODES.get(parsed.str_arg(1) or "") if parsed else None
    if occurrence_id is None or answer is None:
        raise StaleButton()
    await _require_registered(context, occurrence_id)
    occurrence, meeting, org = await meetings.rsvp(
        context.session,
        member=context.member,
        occurrence_id=occurrence_id,
        answer=answer,
        now=context.now,
        join=parsed.str_arg(2) == "j" and is_private(update),
    )
    shown = meetings.MeetingView(meeting, org, occurrence, answer=answer.value)
    context.answer(update, context.render("meetings/answered.html", view=shown).text)
    context.card_changed("meeting", meeting.id)
    if not is_private(update):
        return
    message = update.effective_message
    if parsed.str_arg(2) == "r":
        remaining = max(1, round((occurrence.starts_at - context.now).total_seconds() / 60))
        rendered = context.render("meetings/reminder.html", view=shown, remaining=remaining)
    else:
        rendered = await _private_card(context, meeting.id, loaded=(occurrence, meeting, org))
    context.edit(message.chat_id, message.message_id, rendered)


@moim_handler()
async def ics_pressed(update: Update, context: MoimContext) -> None:
    """The card's calendar button: the meeting's .ics, sent privately."""
    meeting_id = _number(update)
    if context.member is None:
        raise NotRegistered(payload=f"meet_{meeting_id}")
    meeting, _ = await meetings.get_meeting(context.session, meeting_id)
    data = await meetings.calendar_of(
        context.session, [meeting_id], now=context.now, domain=_calendar_domain(context)
    )
    context.answer(
        update, context.render("meetings/ics_sent.html", private=is_private(update)).text
    )
    context.send_document(
        update.effective_user.id,
        filename=f"moim-meeting-{meeting.id}.ics",
        data=data,
        caption=context.render("meetings/ics_caption.html", meeting=meeting),
    )


def _calendar_domain(context: MoimContext) -> str:
    return f"{context.runtime.renderer.bot_username}.t.me"


# --- lists and calendars -----------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def list_meetings(update: Update, context: MoimContext) -> None:
    """/meetings: the person's next meetings with their answers."""
    rows = await meetings.upcoming_for(context.session, context.member, now=context.now)
    context.reply(update, context.render("meetings/list.html", rows=rows))


@moim_handler(private=True, registered=True)
async def send_calendar(update: Update, context: MoimContext) -> None:
    """/calendar: an .ics file of the person's upcoming meetings."""
    await _calendar(update, context)


@moim_handler(private=True, registered=True)
async def calendar_pressed(update: Update, context: MoimContext) -> None:
    """The calendar button under /meetings."""
    context.answer(update)
    await _calendar(update, context)


async def _calendar(update: Update, context: MoimContext) -> None:
    data, count = await meetings.calendar_for(
        context.session, context.member, now=context.now, domain=_calendar_domain(context)
    )
    if not count:
        context.reply(update, context.render("meetings/list.html", rows=[]))
        return
    context.send_document(
        update.effective_chat.id,
        filename="moim-meetings.ics",
        data=data,
        caption=context.render("meetings/ics_caption.html", meeting=None, count=count),
    )


async def me_section(context: MoimContext, member) -> str:
    """/me: upcoming meetings with answers, and attendance."""
    rows = await meetings.upcoming_for(context.session, member, now=context.now, limit=3)
    attendance = await meetings.attendance_of(context.session, member)
    if not rows and not attendance.attended:
        return ""
    return context.render("meetings/me_section.html", rows=rows, attendance=attendance).text


# --- the organiser's view ----------------------------------------------------------------------


async def _manage_view(context: MoimContext, meeting_id: int, occurrence_id: int | None = None):
    shown = await meetings.view(
        context.session,
        meeting_id,
        now=context.now,
        viewer=context.member,
        occurrence_id=occurrence_id,
        is_bot_admin=await context.is_admin(),
        for_management=True,
    )
    if not shown.is_organizer:
        await _as_organizer(context, shown.organization, "meeting.manage")
    return context.render("meetings/manage.html", view=shown, now=context.now)


@moim_handler(private=True, registered=True)
async def manage_pressed(update: Update, context: MoimContext) -> None:
    """⚙: what an organiser can do with the meeting (or with one occurrence of it)."""
    meeting_id = _number(update)
    occurrence_id = callback(update).int_arg(1)
    rendered = await _manage_view(context, meeting_id, occurrence_id)
    context.answer(update)
    message = update.effective_message
    if occurrence_id is None:
        context.reply(update, rendered)
    else:
        context.edit(message.chat_id, message.message_id, rendered)


@moim_handler(private=True, registered=True)
async def move_pressed(update: Update, context: MoimContext) -> None:
    """Move one occurrence (o) or the whole series (s): ask for the new time."""
    parsed = callback(update)
    scope, item_id = (parsed.str_arg(0), parsed.int_arg(1)) if parsed else (None, None)
    if scope not in ("o", "s") or item_id is None:
        raise StaleButton()
    if scope == "o":
        occurrence, meeting, org = await meetings.get_occurrence(context.session, item_id)
    else:
        meeting, org = await meetings.get_meeting(context.session, item_id)
        occurrence = await meetings.next_occurrence(context.session, meeting.id, now=context.now)
    await _as_organizer(context, org, "meeting.move")
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=MOVE_FLOW,
        step=scope,
        data={"id": item_id, "org_id": org.id},
        now=context.now,
    )
    context.answer(update)
    shown = meetings.MeetingView(meeting, org, occurrence)
    context.reply(
        update, context.render("meetings/ask_move.html", view=shown, series=scope == "s")
    )


@moim_handler(private=True, registered=True)
async def move_text(update: Update, context: MoimContext, state) -> None:
    """The new time of a moved occurrence or series."""
    org = await organizations.by_id(context.session, state.data["org_id"])
    text = update.effective_message.text
    new_start = meetings.read_start(text, now=context.now, timezone=org.timezone)
    common = {
        "actor": context.member,
        "new_start": new_start,
        "renderer": context.runtime.renderer,
        "now": context.now,
        "is_bot_admin": await context.is_admin(),
    }
    if state.step == "s":
        change = await meetings.move_series(
            context.session,
            meeting_id=state.data["id"],
            ahead=_settings(context).scheduled_ahead,
            **common,
        )
    else:
        change = await meetings.move_occurrence(
            context.session, occurrence_id=state.data["id"], **common
        )
    await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    context.card_changed("meeting", change.meeting.id)
    context.reply(
        update,
        context.render(
            "meetings/changed.html",
            change=change,
            what="series_moved" if state.step == "s" else "moved",
        ),
    )


@moim_handler(private=True, registered=True)
async def cancel_pressed(update: Update, context: MoimContext) -> None:
    """Cancel one occurrence (o) or the series (s): ask first, then do it on "ok"."""
    parsed = callback(update)
    scope, item_id = (parsed.str_arg(0), parsed.int_arg(1)) if parsed else (None, None)
    if scope not in ("o", "s") or item_id is None:
        raise StaleButton()
    confirmed = parsed.str_arg(2) == "ok"
    context.answer(update)
    message = update.effective_message
    if not confirmed:
        if scope == "o":
            occurrence, meeting, org = await meetings.get_occurrence(context.session, item_id)
        else:
            meeting, org = await meetings.get_meeting(context.session, item_id)
            occurrence = None
        await _as_organizer(context, org, "meeting.cancel")
        shown = meetings.MeetingView(meeting, org, occurrence)
        context.edit(
            message.chat_id,
            message.message_id,
            context.render("meetings/confirm_cancel.html", view=shown, scope=scope, item=item_id),
        )
        return
    common = {
        "actor": context.member,
        "renderer": context.runtime.renderer,
        "now": context.now,
        "is_bot_admin": await context.is_admin(),
    }
    if scope == "o":
        change = await meetings.cancel_occurrence(context.session, occurrence_id=item_id, **common)
    else:
        change = await meetings.cancel_series(context.session, meeting_id=item_id, **common)
    context.card_changed("meeting", change.meeting.id)
    what = "series_cancelled" if scope == "s" or not change.meeting.rrule else "cancelled"
    context.edit(
        message.chat_id,
        message.message_id,
        context.render("meetings/changed.html", change=change, what=what),
    )


@moim_handler(private=True, registered=True)
async def reminders_pressed(update: Update, context: MoimContext) -> None:
    """The reminder settings of a meeting: offsets to switch on and off, and the audience."""
    meeting_id = _number(update)
    meeting, org = await meetings.get_meeting(context.session, meeting_id)
    await _as_organizer(context, org, "meeting.remind")
    context.answer(update)
    context.reply(update, _reminders_view(context, meeting))


def _reminders_view(context: MoimContext, meeting) -> Rendered:
    return context.render("meetings/reminders.html", meeting=meeting, choices=REMINDER_CHOICES)


@moim_handler(private=True, registered=True)
async def reminder_toggled(update: Update, context: MoimContext) -> None:
    """Switch one reminder offset on or off."""
    parsed = callback(update)
    meeting_id = parsed.int_arg(0) if parsed else None
    minutes = parsed.int_arg(1) if parsed else None
    if meeting_id is None or minutes not in REMINDER_CHOICES:
        raise StaleButton()
    meeting, _ = await meetings.get_meeting(context.session, meeting_id)
    current = set(meeting.reminder_minutes)
    wanted = current - {minutes} if minutes in current else current | {minutes}
    await _change_reminders(update, context, meeting_id, minutes=sorted(wanted))


@moim_handler(private=True, registered=True)
async def audience_pressed(update: Update, context: MoimContext) -> None:
    """Reminders to those who answered yes or maybe (r), or to the whole organisation (e)."""
    parsed = callback(update)
    meeting_id = parsed.int_arg(0) if parsed else None
    code = parsed.str_arg(1) if parsed else None
    audiences = {"r": ReminderAudience.RESPONDERS, "e": ReminderAudience.EVERYONE}
    if meeting_id is None or code not in audiences:
        raise StaleButton()
    await _change_reminders(update, context, meeting_id, audience=audiences[code])


async def _change_reminders(update: Update, context: MoimContext, meeting_id: int, **change):
    meeting = await meetings.set_reminders(
        context.session,
        actor=context.member,
        meeting_id=meeting_id,
        now=context.now,
        is_bot_admin=await context.is_admin(),
        **change,
    )
    context.answer(update)
    message = update.effective_message
    context.edit(message.chat_id, message.message_id, _reminders_view(context, meeting))


# --- check-in ----------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def checkin_opened(update: Update, context: MoimContext) -> None:
    """The organiser opens check-in: the QR code and the code to read out, sent to them."""
    occurrence_id = _number(update)
    minutes = _settings(context).checkin_minutes
    occurrence, meeting, org = await meetings.open_checkin(
        context.session,
        actor=context.member,
        occurrence_id=occurrence_id,
        minutes=minutes,
        renderer=context.runtime.renderer,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    context.card_changed("meeting", meeting.id)
    link = context.runtime.renderer.deep_link(f"checkin_{occurrence.checkin_code}")
    shown = meetings.MeetingView(meeting, org, occurrence, checkin_open=True)
    context.send_photo(
        update.effective_chat.id,
        data=meetings.qr_png(link),
        caption=context.render("meetings/checkin_opened.html", view=shown, link=link),
    )


@moim_handler(private=True, registered=True)
async def checkin_closed(update: Update, context: MoimContext) -> None:
    """The organiser closes check-in now."""
    occurrence_id = _number(update)
    occurrence, meeting, count = await meetings.close_checkin(
        context.session,
        actor=context.member,
        occurrence_id=occurrence_id,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    context.card_changed("meeting", meeting.id)
    org = await organizations.by_id(context.session, meeting.organization_id)
    shown = meetings.MeetingView(meeting, org, occurrence, attended=count)
    context.reply(update, context.render("meetings/checkin_closed.html", view=shown))


@moim_handler()
async def here_pressed(update: Update, context: MoimContext) -> None:
    """✅ on a card or an invitation: "I am here"."""
    occurrence_id = _number(update)
    await _require_registered(context, occurrence_id)
    occurrence, meeting, org, new = await meetings.check_in(
        context.session,
        member=context.member,
        occurrence_id=occurrence_id,
        method=CheckinMethod.BUTTON,
        now=context.now,
    )
    context.card_changed("meeting", meeting.id)
    shown = meetings.MeetingView(meeting, org, occurrence)
    rendered = context.render("meetings/checked_in.html", view=shown, new=new)
    context.answer(update, rendered.text)
    if is_private(update):
        context.reply(update, rendered)


async def _check_in_code(update: Update, context: MoimContext, code: str, method) -> None:
    occurrence, meeting, org, new = await meetings.check_in(
        context.session, member=context.member, code=code, method=method, now=context.now
    )
    context.card_changed("meeting", meeting.id)
    shown = meetings.MeetingView(meeting, org, occurrence)
    context.reply(update, context.render("meetings/checked_in.html", view=shown, new=new))


async def checkin_link(update: Update, context: MoimContext, code: str) -> None:
    """Deep link checkin_<code> (the QR code): check in."""
    await _check_in_code(update, context, code, CheckinMethod.QR)


@moim_handler(private=True, registered=True)
async def checkin_command(update: Update, context: MoimContext) -> None:
    """/checkin CODE: the code read out in the room."""
    code = command_text(update)
    if not CODE_TEXT.match(code or ""):
        context.reply(update, context.render("meetings/checkin_usage.html"))
        return
    await _check_in_code(update, context, code, CheckinMethod.CODE)


@moim_handler(private=True)
async def typed_code(update: Update, context: MoimContext) -> None:
    """Six digits typed on their own: the check-in code, unless a step-by-step flow waits."""
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    if state is not None or context.member is None:
        await continue_flow(update, context)
        return
    await _check_in_code(update, context, update.effective_message.text, CheckinMethod.CODE)


# --- minutes -----------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def minutes_pressed(update: Update, context: MoimContext) -> None:
    """Send minutes of an occurrence: ask for the text or the document."""
    occurrence_id = _number(update)
    occurrence, meeting, org = await meetings.get_occurrence(context.session, occurrence_id)
    await _as_organizer(context, org, "meeting.minutes")
    if context.now < occurrence.starts_at:
        raise meetings.MinutesTooEarly(title=meeting.title)
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=MINUTES_FLOW,
        step="wait",
        data={"occurrence_id": occurrence.id},
        now=context.now,
    )
    context.answer(update)
    shown = meetings.MeetingView(meeting, org, occurrence)
    context.reply(update, context.render("meetings/ask_minutes.html", view=shown))


@moim_handler(private=True, registered=True)
async def minutes_text(update: Update, context: MoimContext, state) -> None:
    """The minutes as a text: keep it and show what will be sent."""
    await _minutes_draft(update, context, state, text=update.effective_message.text)


@moim_handler(private=True)
async def document_sent(update: Update, context: MoimContext, state) -> None:
    """A file sent while the minutes flow waits: the minutes (a photo is not taken)."""
    document = update.effective_message.document
    if document is None or context.member is None:
        context.reply(update, context.render("common/no_media.html", in_flow=True))
        return
    await _minutes_draft(
        update,
        context,
        state,
        file_id=document.file_id,
        filename=document.file_name or "minutes",
    )


async def _minutes_draft(update: Update, context: MoimContext, state, **draft) -> None:
    occurrence, meeting, org = await meetings.get_occurrence(
        context.session, state.data["occurrence_id"]
    )
    text = draft.get("text", "")
    if text and len(text) > 3500:
        raise meetings.MeetingInvalid(field="minutes", reason="too_long", limit=3500)
    await conversations.advance(
        context.session, state, step="preview", now=context.now, draft=draft
    )
    shown = meetings.MeetingView(meeting, org, occurrence)
    context.reply(update, context.render("meetings/minutes_preview.html", view=shown, **draft))


@moim_handler(private=True, registered=True)
async def minutes_confirmed(update: Update, context: MoimContext) -> None:
    """Send the minutes now."""
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    state = await conversations.current(
        context.session, chat_id=chat_id, user_id=user_id, now=context.now
    )
    if state is None or state.flow != MINUTES_FLOW or state.step != "preview":
        raise StaleButton()
    parsed = callback(update)
    if parsed is not None and parsed.str_arg(0) == "no":
        await conversations.finish(context.session, chat_id=chat_id, user_id=user_id)
        context.answer(update)
        context.reply(update, context.render("common/cancelled.html", ended=True))
        return
    draft = state.data.get("draft", {})
    count = await meetings.send_minutes(
        context.session,
        actor=context.member,
        occurrence_id=state.data["occurrence_id"],
        renderer=context.runtime.renderer,
        now=context.now,
        text=draft.get("text", ""),
        file_id=draft.get("file_id", ""),
        filename=draft.get("filename", ""),
        is_bot_admin=await context.is_admin(),
    )
    await conversations.finish(context.session, chat_id=chat_id, user_id=user_id)
    context.answer(update)
    message = update.effective_message
    context.edit(
        message.chat_id,
        message.message_id,
        context.render("meetings/minutes_sent.html", count=count),
    )


# --- exports -----------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def export_pressed(update: Update, context: MoimContext) -> None:
    """The attendance sheet of a meeting, as an Excel file or CSV."""
    parsed = callback(update)
    meeting_id = parsed.int_arg(0) if parsed else None
    kind = parsed.str_arg(1) if parsed else None
    if meeting_id is None or kind not in ("csv", "xlsx"):
        raise StaleButton()
    renderer = context.runtime.renderer
    headers = renderer.text("meetings/export_headers.html", context.language).splitlines()
    labels = dict(
        line.split("=", 1)
        for line in renderer.text("meetings/export_labels.html", context.language).splitlines()
    )
    meeting, data = await meetings.export_attendance(
        context.session,
        actor=context.member,
        meeting_id=meeting_id,
        kind=kind,
        headers=headers,
        labels=labels,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    context.send_document(
        update.effective_chat.id,
        filename=f"moim-attendance-{meeting.id}-{context.now:%Y%m%d}.{kind}",
        data=data,
        caption=context.render("meetings/export_caption.html", meeting=meeting),
    )


# --- scheduled work ----------------------------------------------------------------------------


async def run_reminder(job_context, job) -> None:
    """A reminder is due: queue it for its audience (the outbox sends it)."""
    await meetings.send_reminder(
        job_context.session,
        occurrence_id=job.payload["occurrence_id"],
        minutes=job.payload["minutes"],
        renderer=job_context.runtime.renderer,
        now=job_context.now,
    )


async def run_extension(job_context, job) -> None:
    """An occurrence began: schedule the series' next one; the cards stop taking answers."""
    meeting_id = job.payload["meeting_id"]
    await meetings.extend_job(
        job_context.session,
        meeting_id=meeting_id,
        now=job_context.now,
        ahead=job_context.runtime.config.meetings.scheduled_ahead,
    )
    job_context.card_changed("meeting", meeting_id)


async def run_checkin_close(job_context, job) -> None:
    """Check-in closes by itself: the organiser gets the count; the cards lose the button."""
    meeting_id = await meetings.finish_checkin(
        job_context.session,
        occurrence_id=job.payload["occurrence_id"],
        renderer=job_context.runtime.renderer,
        now=job_context.now,
    )
    if meeting_id is not None:
        job_context.card_changed("meeting", meeting_id)
