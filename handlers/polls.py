"""Polls: create (step by step or in one line), vote with one tap, close, count, verify."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.render import Rendered
from bot.runtime import Audience, CardKind, CardRequest
from bot.services import cards, charts, conversations, exports, organizations, outbox, polls
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
from models import PollKind, ScheduledJob

FLOW = "new_poll"
REASON_FLOW = "poll_reason"
KIND = "poll"
BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
EMPTY_ORDER = "_"


def register(app: MoimApplication) -> None:
    """Add the polls feature's handlers and plug it into cards, links, /me, jobs and privacy."""
    features = app.runtime.features
    app.add_handler(CommandHandler("new_poll", new_poll))
    app.add_handler(CallbackQueryHandler(new_poll_step, pattern=pattern("newpoll")))
    app.add_handler(CallbackQueryHandler(vote_pressed, pattern=pattern("poll:vote")))
    app.add_handler(CallbackQueryHandler(panel_opened, pattern=pattern("poll:panel")))
    app.add_handler(CallbackQueryHandler(multi_toggled, pattern=pattern("poll:mc")))
    app.add_handler(CallbackQueryHandler(multi_submitted, pattern=pattern("poll:mcv")))
    app.add_handler(CallbackQueryHandler(rank_changed, pattern=pattern("poll:rk")))
    app.add_handler(CallbackQueryHandler(rank_submitted, pattern=pattern("poll:rkv")))
    app.add_handler(CallbackQueryHandler(reason_pressed, pattern=pattern("poll:why")))
    app.add_handler(CallbackQueryHandler(show_pressed, pattern=pattern("poll:show")))
    app.add_handler(CallbackQueryHandler(results_pressed, pattern=pattern("poll:res")))
    app.add_handler(CallbackQueryHandler(export_pressed, pattern=pattern("poll:exp")))
    app.add_handler(CallbackQueryHandler(close_pressed, pattern=pattern("poll:close")))
    app.add_handler(CallbackQueryHandler(close_confirmed, pattern=pattern("poll:closeok")))
    app.add_handler(CallbackQueryHandler(delete_pressed, pattern=pattern("poll:del")))
    app.add_handler(CallbackQueryHandler(delete_confirmed, pattern=pattern("poll:delok")))
    app.add_handler(CallbackQueryHandler(list_for_org, pattern=pattern("poll:list")))
    app.add_handler(CommandHandler("polls", list_polls))
    app.add_handler(CommandHandler("results", results_command))
    app.add_handler(CommandHandler("close_poll", close_command))
    app.add_handler(CommandHandler("verify", verify))
    features.deep_links["poll"] = open_poll_link
    features.flows[FLOW] = new_poll_text
    features.flows[REASON_FLOW] = reason_text
    features.me_sections.append(me_section)
    features.help_templates.append("polls/help.html")
    features.command_menus.append("polls/command_menu.html")
    features.add_job(polls.CLOSE_JOB, close_when_due)
    features.add_job(polls.NUDGE_JOB, nudge_when_due)
    features.privacy.append(
        PrivacyHook(name="polls", export=polls.export_member, erase=polls.erase_member)
    )
    features.cards[KIND] = CardKind(
        kind=KIND,
        postable=polls.postable,
        owner=polls.organization_of,
        render=render_card,
        label_template="polls/label.html",
    )
    features.audiences[KIND] = Audience(
        key=KIND,
        variants=polls.AUDIENCE_VARIANTS,
        items=polls.postable,
        member_ids=polls.audience_query,
        label_template="polls/audience_label.html",
    )


# --- the card ---------------------------------------------------------------------------------


async def card_values(session, view: polls.PollView, member=None) -> dict[str, Any]:
    """What polls/card.html needs: the poll, its count, and the viewer's own vote."""
    results = await polls.tally(session, view)
    me = await polls.my_vote(session, view, member) if member is not None else None
    return {
        "view": view,
        "poll": view.poll,
        "org": view.org,
        "results": results,
        "show_counts": polls.counts_visible(view.poll),
        "me": me,
    }


async def render_card(request: CardRequest) -> Rendered | None:
    """A posted card as it should look now (a group's, or the creator's private one)."""
    try:
        view = await polls.load(request.session, request.item_id)
    except polls.PollNotFound:
        poll = await polls.deleted_poll(request.session, request.item_id)
        return request.render("polls/deleted.html", poll=poll) if poll else None
    values = await card_values(request.session, view)
    return request.render(
        "polls/card.html", **values, private=request.chat_id > 0, manage=request.chat_id > 0
    )


async def _personal_card(context: MoimContext, view: polls.PollView) -> Rendered:
    """The card in someone's private chat, with their own vote marked."""
    session = context.session
    manage = await polls.is_poll_organizer(
        session, view, context.member, is_bot_admin=await context.is_admin()
    )
    values = await card_values(session, view, context.member)
    return context.render("polls/card.html", **values, private=True, manage=manage)


async def open_poll_link(update: Update, context: MoimContext, argument: str) -> None:
    """Deep link poll_<id>: the poll in the private chat (where a tap in a group leads)."""
    if not argument.isdigit():
        raise StaleButton()
    view = await polls.load(context.session, int(argument))
    context.reply(update, await _personal_card(context, view))
    if view.poll.is_open and view.poll.kind in (PollKind.MULTIPLE, PollKind.RANKED):
        await _send_panel(update, context, view)


# --- creating: one line, or step by step ------------------------------------------------------


@moim_handler(private=True, registered=True)
async def new_poll(update: Update, context: MoimContext) -> None:
    """/new_poll: step by step; ``/new_poll QUESTION | OPTION | OPTION | KEY: VALUE`` at once."""
    text = command_text(update)
    draft = None
    if text:
        org_timezone = context.runtime.config.bot.timezone
        draft = polls.draft_from_line(text, now=context.now, timezone=org_timezone)
    org = await resolve_org(
        update, context, None, choose_action="newpoll:org", action="poll.create"
    )
    if org is None:  # several organisations: the person picks one with a button
        await _begin(update, context, step="org", draft=draft)
        return
    if draft is not None:
        await _publish(update, context, org, draft)
        return
    await _begin(update, context, step="question", org_id=org.id)
    context.reply(update, context.render("polls/ask_question.html", org=org))


async def _begin(
    update: Update,
    context: MoimContext,
    *,
    step: str,
    draft: polls.PollDraft | None = None,
    org_id: int | None = None,
) -> None:
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=FLOW,
        step=step,
        data={
            "draft": (draft or polls.PollDraft()).to_data(),
            "org_id": org_id,
            "one_line": draft is not None,
        },
        now=context.now,
    )


async def _publish(update: Update, context: MoimContext, org, draft: polls.PollDraft) -> None:
    """Create the poll, show its live card here, and say how to post it into the group."""
    poll = await polls.create_poll(
        context.session,
        creator=context.member,
        org=org,
        draft=draft,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    groups = await organizations.posting_chats(context.session, org)
    context.reply(update, context.render("polls/created.html", poll=poll, org=org, groups=groups))
    await show_card(context, KIND, poll.id, update.effective_chat.id)


@moim_handler(private=True, registered=True)
async def new_poll_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer inside /new_poll: the question, the options, a quorum, a time."""
    text = update.effective_message.text.strip()
    draft = polls.PollDraft.from_data(state.data["draft"])
    session, now = context.session, context.now
    org = (
        await organizations.by_id(session, state.data["org_id"])
        if state.data.get("org_id")
        else None
    )
    if state.step == "question":
        draft.question = polls.check_question(text)
        await _advance(context, state, "options", draft)
        context.reply(update, context.render("polls/ask_options.html", draft=draft))
    elif state.step == "options":
        lines = [line for line in re.split(r"\n|\|", text) if line.strip()]
        draft.options = polls.check_options(lines)
        await _advance(context, state, "kind", draft)
        context.reply(update, context.render("polls/ask_kind.html", draft=draft))
    elif state.step in ("quorum", "closes", "remind") and org is not None:
        polls.apply_setting(draft, state.step, text, now=now, timezone=org.timezone)
        polls.check_timing(draft, now=now)
        await _advance(context, state, "settings", draft)
        context.reply(update, _settings(context, draft, org))
    else:
        context.reply(update, context.render("polls/use_buttons.html"))


async def _advance(context: MoimContext, state, step: str, draft: polls.PollDraft) -> None:
    await conversations.advance(
        context.session, state, step=step, now=context.now, draft=draft.to_data()
    )


def _settings(context: MoimContext, draft: polls.PollDraft, org) -> Rendered:
    return context.render("polls/settings.html", draft=draft, org=org)


@moim_handler(private=True, registered=True)
async def new_poll_step(update: Update, context: MoimContext) -> None:
    """A button inside /new_poll: organisation, kind, limit, settings, preview, publish."""
    parsed, state = await flow_button(update, context, FLOW)
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    session, now = context.session, context.now
    draft = polls.PollDraft.from_data(state.data["draft"])
    verb, value = parsed.verb, parsed.str_arg(0)
    message = update.effective_message
    if verb == "cancel":
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.answer(update)
        context.reply(update, context.render("common/cancelled.html", ended=True))
        return
    if verb == "org" and state.step == "org":
        org = await org_from_button(update, context, parsed.int_arg(0), action="poll.create")
        context.answer(update)
        if state.data.get("one_line"):
            await conversations.finish(session, chat_id=chat_id, user_id=user_id)
            await _publish(update, context, org, draft)
            return
        await conversations.advance(session, state, step="question", now=now, org_id=org.id)
        context.reply(update, context.render("polls/ask_question.html", org=org))
        return
    org = await org_from_button(update, context, state.data.get("org_id"), action="poll.create")
    if verb == "prop" and state.step == "options":
        draft.kind, draft.options = PollKind.PROPOSAL, []
        await _advance(context, state, "settings", draft)
        context.answer(update)
        context.reply(update, _settings(context, draft, org))
    elif verb == "kind" and state.step == "kind" and value in ("single", "multiple", "ranked"):
        draft.kind = PollKind(value)
        context.answer(update)
        if draft.kind == PollKind.MULTIPLE:
            await _advance(context, state, "max", draft)
            context.reply(update, context.render("polls/ask_max.html", draft=draft))
        else:
            await _advance(context, state, "settings", draft)
            context.reply(update, _settings(context, draft, org))
    elif verb == "max" and state.step == "max" and parsed.int_arg(0) is not None:
        limit = parsed.int_arg(0)
        if not 0 <= limit <= len(draft.options):
            raise StaleButton()
        draft.max_choices = limit
        await _advance(context, state, "settings", draft)
        context.answer(update)
        context.reply(update, _settings(context, draft, org))
    elif verb == "set" and state.step in ("settings", "quorum", "closes", "remind"):
        await _change_setting(update, context, state, draft, org, value)
    elif verb == "preview" and state.step in ("settings", "preview"):
        polls.validate_draft(draft, now=now)
        await _advance(context, state, "preview", draft)
        context.answer(update)
        context.reply(update, context.render("polls/preview.html", draft=draft, org=org))
    elif verb == "back" and state.step == "preview":
        await _advance(context, state, "settings", draft)
        context.answer(update)
        context.edit(message.chat_id, message.message_id, _settings(context, draft, org))
    elif verb == "publish" and state.step == "preview":
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.answer(update)
        await _publish(update, context, org, draft)
    else:
        raise StaleButton()


async def _change_setting(update, context, state, draft, org, setting: str | None) -> None:
    """A settings button: switch a choice in place, or ask for a number or a time."""
    message = update.effective_message
    if setting in polls.TOGGLES:
        polls.toggle_setting(draft, setting)
    elif setting in ("quorum", "closes", "remind"):
        if setting == "remind" and draft.closes_at is None:
            context.answer(
                update, context.render("polls/remind_needs_close.html").text, alert=True
            )
            return
        await _advance(context, state, setting, draft)
        context.answer(update)
        context.reply(update, context.render("polls/ask_setting.html", setting=setting))
        return
    else:
        raise StaleButton()
    await _advance(context, state, "settings", draft)
    context.answer(update)
    context.edit(message.chat_id, message.message_id, _settings(context, draft, org))


# --- voting -----------------------------------------------------------------------------------


def _poll_arg(update: Update) -> int:
    parsed = callback(update)
    poll_id = parsed.int_arg(0) if parsed else None
    if poll_id is None:
        raise StaleButton()
    return poll_id


def _require_member(context: MoimContext, poll_id: int):
    """The registered voter, or NotRegistered with a link that comes back to this poll."""
    if context.member is None:
        raise NotRegistered(payload=f"poll_{poll_id}")
    return context.member


async def _cast(
    update: Update, context: MoimContext, poll_id: int, positions: list[int]
) -> polls.VoteOutcome:
    member = _require_member(context, poll_id)
    outcome = await polls.cast_vote(
        context.session,
        poll_id=poll_id,
        member=member,
        positions=positions,
        tiers=context.runtime.config.tiers,
        now=context.now,
    )
    if outcome.changed:
        context.card_changed(KIND, poll_id)
    return outcome


@moim_handler()
async def vote_pressed(update: Update, context: MoimContext) -> None:
    """One tap on an option (single choice, proposal): recorded, and said so at once."""
    parsed = callback(update)
    poll_id = parsed.int_arg(0) if parsed else None
    position = parsed.int_arg(1) if parsed else None
    if poll_id is None or position is None:
        raise StaleButton()
    outcome = await _cast(update, context, poll_id, [position])
    context.answer(update, context.render("polls/voted.html", outcome=outcome).text)
    if outcome.receipt:
        context.send(
            update.effective_user.id,
            context.render("polls/receipt.html", outcome=outcome, in_group=not is_private(update)),
        )
    if is_private(update) and outcome.changed:
        message = update.effective_message
        context.edit(
            message.chat_id, message.message_id, await _personal_card(context, outcome.view)
        )


async def _send_panel(update: Update, context: MoimContext, view: polls.PollView) -> None:
    """The private panel for multiple and ranked choice, starting from one's current vote."""
    mine = await polls.my_vote(context.session, view, context.member)
    if mine.secret_cast:
        context.reply(update, context.render("polls/already_cast.html", poll=view.poll))
        return
    context.reply(update, _panel(context, view, mine.positions))


def _panel(context: MoimContext, view: polls.PollView, positions: list[int]) -> Rendered:
    """The panel with the choices so far in its buttons' data (never stored anywhere else:
    for a secret ballot, nothing may link the voter to a choice before it is cast)."""
    poll = view.poll
    if poll.kind == PollKind.MULTIPLE:
        mask = sum(1 << (p - 1) for p in positions)
        toggles = [
            {
                "option": option,
                "checked": option.position in positions,
                "mask": f"{mask ^ (1 << (option.position - 1)):x}",
            }
            for option in view.options
        ]
        return context.render(
            "polls/panel_multi.html",
            poll=poll,
            toggles=toggles,
            chosen=positions,
            mask=f"{mask:x}",
        )
    order = "".join(BASE36[p] for p in positions)
    by_position = {o.position: o for o in view.options}
    remaining = [
        {"option": option, "order": order + BASE36[option.position]}
        for option in view.options
        if option.position not in positions
    ]
    return context.render(
        "polls/panel_ranked.html",
        poll=poll,
        chosen_options=[by_position[p] for p in positions],
        remaining=remaining,
        order=order or EMPTY_ORDER,
        undo=order[:-1] or EMPTY_ORDER,
    )


@moim_handler(private=True)
async def panel_opened(update: Update, context: MoimContext) -> None:
    """ "Vote" on a multiple or ranked card in the private chat: a fresh panel."""
    poll_id = _poll_arg(update)
    _require_member(context, poll_id)
    view = await polls.load(context.session, poll_id)
    if not polls.takes_votes(view.poll, context.now):
        raise polls.PollClosed(question=view.poll.question)
    context.answer(update)
    await _send_panel(update, context, view)


def _mask_positions(view: polls.PollView, text: str | None) -> list[int]:
    if text is None or not re.fullmatch(r"[0-9a-f]{1,4}", text):
        raise StaleButton()
    mask = int(text, 16)
    if mask >> len(view.options):
        raise StaleButton()
    return [n for n in range(1, len(view.options) + 1) if mask & (1 << (n - 1))]


def _order_positions(view: polls.PollView, text: str | None) -> list[int]:
    if text is None or not re.fullmatch(r"_|[1-9a-z]{1,12}", text):
        raise StaleButton()
    positions = [] if text == EMPTY_ORDER else [BASE36.index(ch) for ch in text]
    if len(set(positions)) != len(positions) or any(p > len(view.options) for p in positions):
        raise StaleButton()
    return positions


async def _panel_view(update: Update, context: MoimContext) -> polls.PollView:
    poll_id = _poll_arg(update)
    _require_member(context, poll_id)
    view = await polls.load(context.session, poll_id)
    if not polls.takes_votes(view.poll, context.now):
        raise polls.PollClosed(question=view.poll.question)
    return view


@moim_handler(private=True)
async def multi_toggled(update: Update, context: MoimContext) -> None:
    """An option ticked or unticked on the multiple-choice panel (nothing is stored yet)."""
    view = await _panel_view(update, context)
    positions = _mask_positions(view, callback(update).str_arg(1))
    if len(positions) > view.poll.max_choices:
        context.answer(
            update,
            context.render("polls/too_many.html", limit=view.poll.max_choices).text,
            alert=True,
        )
        return
    context.answer(update)
    message = update.effective_message
    context.edit(message.chat_id, message.message_id, _panel(context, view, positions))


@moim_handler(private=True)
async def rank_changed(update: Update, context: MoimContext) -> None:
    """An option added to (or taken back from) the ranking on the panel."""
    view = await _panel_view(update, context)
    positions = _order_positions(view, callback(update).str_arg(1))
    context.answer(update)
    message = update.effective_message
    context.edit(message.chat_id, message.message_id, _panel(context, view, positions))


async def _submit(update: Update, context: MoimContext, positions: list[int]) -> None:
    poll_id = _poll_arg(update)
    if not positions:
        raise StaleButton()
    outcome = await _cast(update, context, poll_id, positions)
    context.answer(update, context.render("polls/voted.html", outcome=outcome).text)
    message = update.effective_message
    context.edit(
        message.chat_id,
        message.message_id,
        context.render("polls/panel_done.html", outcome=outcome, in_group=False),
    )


@moim_handler(private=True)
async def multi_submitted(update: Update, context: MoimContext) -> None:
    """The multiple-choice panel's "Vote" button."""
    view = await _panel_view(update, context)
    await _submit(update, context, _mask_positions(view, callback(update).str_arg(1)))


@moim_handler(private=True)
async def rank_submitted(update: Update, context: MoimContext) -> None:
    """The ranked panel's "Vote" button."""
    view = await _panel_view(update, context)
    await _submit(update, context, _order_positions(view, callback(update).str_arg(1)))


@moim_handler(private=True)
async def reason_pressed(update: Update, context: MoimContext) -> None:
    """ "Add a reason" under one's open vote on a proposal: the next message is the reason."""
    poll_id = _poll_arg(update)
    member = _require_member(context, poll_id)
    view = await polls.load(context.session, poll_id)
    mine = await polls.my_vote(context.session, view, member)
    if view.poll.is_secret or view.poll.kind != PollKind.PROPOSAL or not mine.positions:
        raise polls.NoReasonHere()
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=REASON_FLOW,
        step="reason",
        data={"poll_id": poll_id},
        now=context.now,
    )
    context.answer(update)
    context.reply(update, context.render("polls/ask_reason.html", poll=view.poll))


@moim_handler(private=True, registered=True)
async def reason_text(update: Update, context: MoimContext, state) -> None:
    """The reason itself."""
    view = await polls.set_reason(
        context.session,
        poll_id=state.data["poll_id"],
        member=context.member,
        reason=update.effective_message.text,
        now=context.now,
    )
    await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    context.reply(update, context.render("polls/reason_saved.html", poll=view.poll))


# --- results, exports, closing, deleting ------------------------------------------------------


def _id_from_text(update: Update, usage: str) -> int:
    words = command_text(update).lstrip("#").split()
    if len(words) != 1 or not words[0].lstrip("#").isdigit():
        raise polls.PollInputError(field="poll_id", reason=usage)
    return int(words[0].lstrip("#"))


async def _send_results(update: Update, context: MoimContext, poll_id: int) -> None:
    """The count as text (with exports for organisers) and as a bar chart."""
    results, organizer = await polls.results_for(
        context.session,
        poll_id=poll_id,
        member=context.member,
        is_bot_admin=await context.is_admin(),
    )
    show = polls.counts_visible(results.poll)
    chat_id = update.effective_chat.id
    context.send(
        chat_id,
        context.render(
            "polls/results.html",
            results=results,
            poll=results.poll,
            org=results.view.org,
            show_counts=show,
            organizer=organizer,
            min_group=polls.MIN_GROUP_RESULTS,
        ),
    )
    if show and results.voters:
        context.send_photo(
            chat_id,
            data=_chart(context, results),
            caption=context.render("polls/chart_caption.html", results=results),
        )


def _chart(context: MoimContext, results: polls.Results) -> bytes:
    winners = {c.option.id for c in results.leading} if not results.poll.is_open else set()
    counts = results.rounds[-1].counts if results.rounds else results.options
    shown = {c.option.id: c for c in counts}
    bars = []
    for count in results.options:
        final = shown.get(count.option.id)
        amount = results.amount(final) if final else 0.0
        base = results.rounds[-1].continuing if results.rounds else results.base
        ratio = amount / base if base else 0.0
        bars.append(
            charts.Bar(
                label=str(count.option.position),
                ratio=ratio,
                text=context.render(
                    "polls/chart_value.html", amount=amount, ratio=ratio, weighted=results.weighted
                ).text,
                highlight=count.option.id in winners,
            )
        )
    return charts.bar_chart_png(bars)


@moim_handler(registered=True)
async def results_command(update: Update, context: MoimContext) -> None:
    """/results NUMBER: counts, turnout, quorum, rounds, and the chart."""
    await _send_results(update, context, _id_from_text(update, "results"))


@moim_handler(registered=True)
async def results_pressed(update: Update, context: MoimContext) -> None:
    """The "Results" button."""
    poll_id = _poll_arg(update)
    context.answer(update)
    await _send_results(update, context, poll_id)


async def _organised(update: Update, context: MoimContext, poll_id: int, action: str):
    view = await polls.load(context.session, poll_id)
    await polls.require_poll_organizer(
        context.session,
        view,
        context.member,
        action=action,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    return view


EXPORT_KINDS = {"r": "results", "b": "ballots"}


@moim_handler(private=True, registered=True)
async def export_pressed(update: Update, context: MoimContext) -> None:
    """Export buttons (organisers): results or ballots, as CSV (Excel-ready) or XLSX."""
    parsed = callback(update)
    poll_id = _poll_arg(update)
    what, fmt = EXPORT_KINDS.get(parsed.str_arg(1) or ""), parsed.str_arg(2)
    if what is None or fmt not in ("csv", "xlsx"):
        raise StaleButton()
    view = await _organised(update, context, poll_id, "poll.export")
    poll = view.poll
    polls.check_export(poll, what)
    language = context.language
    renderer = context.runtime.renderer
    headers = renderer.text(
        "polls/export_headers.html", language, what=what, secret=poll.is_secret
    ).splitlines()
    labels = {
        o.id: renderer.text("polls/option_name.html", language, option=o) for o in view.options
    }
    if what == "results":
        results = await polls.tally(context.session, view)
        rows = _result_rows(results, labels)
    else:
        rows = _ballot_rows(context, view, labels)
    timezone = view.org.timezone
    if fmt == "csv":
        data = await exports.csv_bytes(headers, rows, timezone=timezone)
    else:
        data = await exports.xlsx_bytes(
            headers, rows, sheet_title=f"poll {poll.id}", timezone=timezone
        )
    context.answer(update)
    context.send_document(
        update.effective_chat.id,
        filename=f"moim-poll-{poll.id}-{what}.{fmt}",
        data=data,
        caption=context.render("polls/export_caption.html", poll=poll, what=what),
    )
    await polls.record_export(
        context.session,
        view=view,
        actor=context.member,
        what=what,
        file_format=fmt,
        now=context.now,
    )


def _result_rows(results: polls.Results, labels: dict[int, str]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for count in results.options:
        rows.append(
            [
                "",
                count.option.position,
                labels[count.option.id],
                count.votes,
                round(count.weight, 4),
                round(results.share(count) * 100, 1),
            ]
        )
    for group in results.groups:
        for count in group.options:
            rows.append(
                [
                    group.name or "…",
                    count.option.position,
                    labels[count.option.id],
                    count.votes,
                    "",
                    "",
                ]
            )
    return rows


async def _ballot_rows(context: MoimContext, view: polls.PollView, labels: dict[int, str]):
    async for row in polls.ballot_rows(context.session, view):
        if view.poll.is_secret:
            receipt, group, position, option, rank, weight = row
            yield [receipt, group, position, labels[option.id], rank, weight]
        else:
            name, group, position, option, rank, weight, reason, voted_at = row
            yield [
                name or "—",
                group,
                position,
                labels[option.id],
                rank,
                weight,
                reason or "",
                voted_at,
            ]


@moim_handler(registered=True)
async def close_command(update: Update, context: MoimContext) -> None:
    """/close_poll NUMBER: close now (organisers), after a confirmation."""
    view = await _organised(update, context, _id_from_text(update, "close"), "poll.close")
    if not view.poll.is_open:
        raise polls.PollClosed(question=view.poll.question)
    context.reply(update, context.render("polls/confirm_close.html", poll=view.poll))


@moim_handler(registered=True)
async def close_pressed(update: Update, context: MoimContext) -> None:
    """The "Close now" button: confirm first."""
    view = await _organised(update, context, _poll_arg(update), "poll.close")
    if not view.poll.is_open:
        raise polls.PollClosed(question=view.poll.question)
    context.answer(update)
    context.send(
        update.effective_user.id, context.render("polls/confirm_close.html", poll=view.poll)
    )


@moim_handler(private=True, registered=True)
async def close_confirmed(update: Update, context: MoimContext) -> None:
    """Closing confirmed: close, tell the groups, show the results here."""
    poll_id = _poll_arg(update)
    view = await polls.close_poll(
        context.session,
        poll_id=poll_id,
        actor=context.member,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    context.answer(update)
    context.card_changed(KIND, poll_id)
    results = await polls.tally(context.session, view)
    await announce_closed(
        context.session,
        context.runtime,
        results,
        now=context.now,
        skip_chat=update.effective_chat.id,
    )
    message = update.effective_message
    context.edit(
        message.chat_id,
        message.message_id,
        context.render("polls/closed_here.html", poll=view.poll),
    )
    await _send_results(update, context, poll_id)


async def announce_closed(
    session,
    runtime,
    results: polls.Results,
    *,
    now: dt.datetime,
    skip_chat: int | None = None,
    send=None,
) -> None:
    """Queue the closing notice for every chat the poll's card is in (groups and the
    creator's private chat), in that card's language, once per chat."""
    poll = results.poll
    posted = await cards.of_item(session, KIND, poll.id)
    chats: dict[int, str] = {card.chat_id: card.language for card in posted}
    for chat_id, language in chats.items():
        if chat_id == skip_chat:
            continue
        rendered = runtime.renderer.render(
            "polls/closed_notice.html",
            language,
            results=results,
            poll=poll,
            org=results.view.org,
            private=chat_id > 0,
        )
        key = f"poll-{poll.id}-closed-{chat_id}"
        if send is not None:
            await send(chat_id, rendered, dedupe_key=key)
        else:
            await outbox.enqueue(
                session,
                chat_id=chat_id,
                payload=outbox.message_payload(rendered.to_payload()),
                now=now,
                batch=f"poll:{poll.id}",
                dedupe_key=key,
            )


@moim_handler(registered=True)
async def delete_pressed(update: Update, context: MoimContext) -> None:
    """The "Delete" button: confirm first."""
    view = await _organised(update, context, _poll_arg(update), "poll.delete")
    context.answer(update)
    context.send(
        update.effective_user.id, context.render("polls/confirm_delete.html", poll=view.poll)
    )


@moim_handler(private=True, registered=True)
async def delete_confirmed(update: Update, context: MoimContext) -> None:
    """Deleting confirmed."""
    poll_id = _poll_arg(update)
    view = await polls.delete_poll(
        context.session,
        poll_id=poll_id,
        actor=context.member,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    context.answer(update)
    context.card_changed(KIND, poll_id)
    message = update.effective_message
    context.edit(
        message.chat_id, message.message_id, context.render("polls/deleted.html", poll=view.poll)
    )


@moim_handler(private=True, registered=True)
async def show_pressed(update: Update, context: MoimContext) -> None:
    """A poll chosen from /polls: its card here, with the organiser's buttons."""
    view = await polls.load(context.session, _poll_arg(update))
    context.answer(update)
    context.reply(update, await _personal_card(context, view))


@moim_handler(private=True, registered=True)
async def list_polls(update: Update, context: MoimContext) -> None:
    """/polls [short-name]: the organisation's polls, open ones first."""
    org = await resolve_org(
        update,
        context,
        command_text(update) or None,
        choose_action="poll:list",
        action="poll.list",
    )
    if org is not None:
        await _list(update, context, org)


@moim_handler(private=True, registered=True)
async def list_for_org(update: Update, context: MoimContext) -> None:
    """The organisation chosen for /polls."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="poll.list"
    )
    context.answer(update)
    await _list(update, context, org)


async def _list(update: Update, context: MoimContext, org) -> None:
    items = await polls.org_polls(context.session, org)
    context.reply(update, context.render("polls/list.html", org=org, polls=items))


@moim_handler(private=True, registered=True)
async def verify(update: Update, context: MoimContext) -> None:
    """/verify CODE: the choice recorded under a secret ballot's receipt (after closing)."""
    code = command_text(update)
    if not code:
        context.reply(update, context.render("polls/verify_usage.html"))
        return
    found = await polls.verify_receipt(context.session, code)
    context.reply(
        update, context.render("polls/verified.html", found=found, show=polls.show_receipt)
    )


# --- /me, audiences, scheduled work -----------------------------------------------------------


async def me_section(context: MoimContext, member) -> str:
    """/me: open polls the person can still vote in."""
    items = await polls.open_polls_for(context.session, member)
    if not items:
        return ""
    return context.render("polls/me_section.html", polls=items).text


async def close_when_due(job_context, job: ScheduledJob) -> None:
    """The scheduled close: once, whichever instance claims it; then the results go out."""
    poll_id = int(job.payload["poll_id"])
    session = job_context.session
    try:
        view = await polls.close_poll(session, poll_id=poll_id, actor=None, now=job_context.now)
    except (polls.PollClosed, polls.PollNotFound):
        return  # closed by hand before, or deleted: nothing left to do
    job_context.card_changed(KIND, poll_id)
    results = await polls.tally(session, view)
    await announce_closed(
        session,
        job_context.runtime,
        results,
        now=job_context.now,
        send=_job_sender(job_context, poll_id),
    )


def _job_sender(job_context, poll_id: int) -> Callable[..., Awaitable[None]]:
    async def send(chat_id: int, rendered: Rendered, *, dedupe_key: str) -> None:
        await job_context.send(chat_id, rendered, batch=f"poll:{poll_id}", dedupe_key=dedupe_key)

    return send


async def nudge_when_due(job_context, job: ScheduledJob) -> None:
    """Closing soon: a private reminder, with the poll's buttons, to each eligible member who
    has not voted yet (and nobody else)."""
    poll_id = int(job.payload["poll_id"])
    session = job_context.session
    view = await polls.take_nudge(session, poll_id, now=job_context.now)
    if view is None:
        return
    recipients = await polls.nudge_recipients(session, poll_id)
    if not recipients:
        return
    values = await card_values(session, view)
    rendered: dict[str, Rendered] = {}
    rows = []
    for person in recipients:
        if person.language not in rendered:
            rendered[person.language] = job_context.render(
                "polls/nudge.html", person.language, **values, private=True, manage=False
            )
        rows.append(
            {
                "chat_id": person.telegram_user_id,
                "member_id": person.member_id,
                "payload": outbox.message_payload(rendered[person.language].to_payload()),
                "dedupe_key": f"poll-{poll_id}-nudge-{person.member_id}",
            }
        )
    await outbox.enqueue_many(session, rows, now=job_context.now, batch=f"poll:{poll_id}:nudge")
