"""Campaigns and event sign-ups: create (guided or one line), the card and its buttons, the
deep link, questions, organisers' views, exports, announcements and the follow-up survey."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.runtime import Audience, CardKind, CardRequest
from bot.scheduler import JobContext
from bot.services import campaigns, conversations, organizations
from bot.services.campaigns import CampaignDraft
from bot.services.errors import NotRegistered, StaleButton
from bot.services.privacy import PrivacyHook
from handlers.common import (
    callback,
    command_text,
    is_private,
    moim_handler,
    org_from_button,
    resolve_org,
)
from models import ScheduledJob

KIND = "campaign"
NEW_FLOW = "new_campaign"
ANSWER_FLOW = "camp_answer"
NOTICE_FLOW = "camp_notice"
COMMENT_FLOW = "camp_comment"
LIST_PAGE = 10
SIGNUPS_PAGE = 15
FORMATS = ("csv", "xlsx")


def register(app: MoimApplication) -> None:
    """Add the campaigns feature: commands, buttons, deep link, card, audience, jobs, privacy."""
    features = app.runtime.features
    app.add_handler(CommandHandler("new_campaign", new_campaign))
    app.add_handler(CommandHandler("campaigns", list_campaigns))
    app.add_handler(CommandHandler("campaign", show_campaign))
    app.add_handler(CommandHandler("signups", show_signups))
    app.add_handler(CommandHandler("edit_campaign", edit_campaign))
    buttons = {
        "camp:neworg": org_chosen,
        "camp:new": new_campaign_step,
        "camp:join": join_pressed,
        "camp:cancel": cancel_pressed,
        "camp:cancelok": cancel_confirmed,
        "camp:keep": keep_pressed,
        "camp:answer": answer_pressed,
        "camp:ans": choice_pressed,
        "camp:list": list_page,
        "camp:manage": manage_pressed,
        "camp:open": open_pressed,
        "camp:close": close_pressed,
        "camp:closeok": close_confirmed,
        "camp:signups": signups_page,
        "camp:export": export_pressed,
        "camp:notice": notice_pressed,
        "camp:send": send_pressed,
        "camp:survey": survey_pressed,
        "camp:sexport": export_pressed,
        "camp:rate": rate_pressed,
        "camp:nocomment": no_comment_pressed,
    }
    for action, handler in buttons.items():
        app.add_handler(CallbackQueryHandler(handler, pattern=pattern(action)))
    features.deep_links["camp"] = open_campaign_link
    features.flows[NEW_FLOW] = new_campaign_text
    features.flows[ANSWER_FLOW] = answer_text
    features.flows[NOTICE_FLOW] = notice_text
    features.flows[COMMENT_FLOW] = comment_text
    features.me_sections.append(me_section)
    features.help_templates.append("campaigns/help.html")
    features.privacy.append(
        PrivacyHook("campaigns", campaigns.export_member, campaigns.erase_member)
    )
    features.cards[KIND] = CardKind(
        kind=KIND,
        postable=campaigns.postable,
        owner=campaigns.owner,
        render=render_card,
        label_template="campaigns/card_label.html",
    )
    features.audiences[KIND] = Audience(
        key=KIND,
        variants=campaigns.AUDIENCE_VARIANTS,
        items=campaigns.announceable,
        member_ids=campaigns.audience_member_ids,
        label_template="campaigns/audience_label.html",
    )
    features.add_job(campaigns.JOB_DEADLINE, deadline_job)
    features.add_job(campaigns.JOB_SURVEY, survey_job)


def _campaign_id(update: Update) -> int:
    """The campaign number a pressed button carries (StaleButton if it carries none)."""
    parsed = callback(update)
    campaign_id = parsed.int_arg(0) if parsed else None
    if campaign_id is None:
        raise StaleButton()
    return campaign_id


def _edit_here(update: Update, context: MoimContext, rendered) -> None:
    """Replace the message whose button was pressed."""
    message = update.effective_message
    context.edit(message.chat_id, message.message_id, rendered)


# --- creating ---------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def new_campaign(update: Update, context: MoimContext) -> None:
    """/new_campaign: step by step; ``/new_campaign TITLE | options`` fills it in at once."""
    text = command_text(update)
    slug = campaigns.named_org(text) if text else None
    org = await resolve_org(
        update, context, slug, choose_action="camp:neworg", action="campaign.create"
    )
    if org is None:  # the person organises several: the choice was sent; keep the line for it
        await _begin(update, context, step="org", data={"line": text})
        return
    await _start_draft(update, context, org, text)


async def _begin(update: Update, context: MoimContext, *, step: str, data: dict) -> None:
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=NEW_FLOW,
        step=step,
        data=data,
        now=context.now,
    )


async def _start_draft(update: Update, context: MoimContext, org, line: str) -> None:
    """Read the one-line form into a preview, or ask the first question of the guided flow."""
    if line:
        draft, _ = campaigns.parse_one_line(line, now=context.now, timezone=org.timezone)
        draft.organization_id = org.id
        await _begin(update, context, step="preview", data=draft.to_data())
    else:
        draft = CampaignDraft(organization_id=org.id)
        await _begin(update, context, step="title", data=draft.to_data())
    context.reply(update, _ask(context, draft, org, "preview" if line else "title"))


def _ask(context: MoimContext, draft: CampaignDraft, org, step: str):
    if step == "preview":
        return context.render("campaigns/preview.html", draft=draft, org=org)
    return context.render(
        "campaigns/ask.html",
        step=step,
        number=campaigns.step_number(step),
        total=len(campaigns.STEPS) - 1,
        draft=draft,
        org=org,
        limits=campaigns,
    )


@moim_handler(private=True, registered=True)
async def org_chosen(update: Update, context: MoimContext) -> None:
    """The organisation chosen for /new_campaign."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="campaign.create"
    )
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    line = state.data.get("line", "") if state and state.flow == NEW_FLOW else ""
    context.answer(update)
    await _start_draft(update, context, org, line)


async def _end_flow(context: MoimContext, user_id: int, flow: str) -> None:
    """End the person's flow in their private chat if it is ``flow`` (and leave others be)."""
    state = await conversations.current(
        context.session, chat_id=user_id, user_id=user_id, now=context.now
    )
    if state is not None and state.flow == flow:
        await conversations.finish(context.session, chat_id=user_id, user_id=user_id)


async def _flow_state(update: Update, context: MoimContext, flow: str):
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    return state if state is not None and state.flow == flow else None


@moim_handler(private=True, registered=True)
async def new_campaign_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer in the guided flow: the title, the date, the capacity, a question..."""
    draft = CampaignDraft.from_data(state.data)
    if state.step in ("org", "preview") or draft.organization_id is None:
        context.reply(update, context.render("campaigns/use_buttons.html"))
        return
    org = await organizations.by_id(context.session, draft.organization_id)
    draft = campaigns.read_step(
        draft, state.step, update.effective_message.text, now=context.now, timezone=org.timezone
    )
    # Questions: one message each, until "Done"; every other step moves on.
    step = state.step if state.step == "questions" else campaigns.next_step(draft, state.step)
    await _advance(update, context, state, draft, org, step)


async def _advance(update, context: MoimContext, state, draft, org, step: str) -> None:
    await conversations.advance(
        context.session, state, step=step, now=context.now, **draft.to_data()
    )
    context.reply(update, _ask(context, draft, org, step))


@moim_handler(private=True, registered=True)
async def new_campaign_step(update: Update, context: MoimContext) -> None:
    """A button in the guided flow: skip, a number of guests, a survey time, create, cancel."""
    parsed = callback(update)
    state = await _flow_state(update, context, NEW_FLOW)
    if parsed is None or state is None or parsed.str_arg(0) != state.step:
        raise StaleButton()
    choice = parsed.str_arg(1) or ""
    context.answer(update)
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    if choice == "cancel":
        await conversations.finish(context.session, chat_id=chat_id, user_id=user_id)
        context.reply(update, context.render("common/cancelled.html", ended=True))
        return
    draft = CampaignDraft.from_data(state.data)
    org = await organizations.by_id(context.session, draft.organization_id)
    if state.step == "preview":
        if choice not in ("open", "draft"):
            raise StaleButton()
        campaign = await campaigns.create_campaign(
            context.session,
            org=org,
            creator=context.member,
            draft=draft,
            open_now=choice == "open",
            now=context.now,
            is_bot_admin=await context.is_admin(),
        )
        await conversations.finish(context.session, chat_id=chat_id, user_id=user_id)
        context.reply(update, context.render("campaigns/created.html", campaign=campaign, org=org))
        return
    draft = campaigns.choose_step(draft, state.step, choice)
    await _advance(update, context, state, draft, org, campaigns.next_step(draft, state.step))


# --- the card, the deep link, signing up ------------------------------------------------------


async def render_card(request: CardRequest):
    """The live card posted in a group: counts and buttons, never the list of people."""
    try:
        view = await campaigns.card_view(request.session, request.item_id, now=request.now)
    except campaigns.CampaignError:
        return None
    return request.render("campaigns/card.html", view=view, personal=False)


def _personal_card(context: MoimContext, view, *, asking: bool = False):
    """The card as one person sees it; ``asking``: the questions follow in their own message."""
    return context.render("campaigns/card.html", view=view, personal=True, asking=asking)


async def open_campaign_link(update: Update, context: MoimContext, argument: str) -> None:
    """Deep link camp_<id>: the campaign's card, with the person's own sign-up."""
    if not argument.isdigit():
        raise campaigns.CampaignNotFound()
    view = await campaigns.card_view(
        context.session, int(argument), now=context.now, member=context.member
    )
    context.reply(update, _personal_card(context, view))


@moim_handler()
async def join_pressed(update: Update, context: MoimContext) -> None:
    """Sign up (with guests) from a card, in the private chat or in a group."""
    campaign_id = _campaign_id(update)
    if context.member is None:
        raise NotRegistered(payload=f"camp_{campaign_id}")
    guests = callback(update).int_arg(1) or 0
    outcome = await campaigns.sign_up(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        guests=guests,
        now=context.now,
        renderer=context.runtime.renderer,
    )
    toast = context.render("campaigns/toast.html", outcome=outcome.view, new=outcome.new)
    context.answer(update, toast.text, alert=not is_private(update))
    card = _personal_card(context, outcome.view, asking=outcome.new)
    if is_private(update):
        _edit_here(update, context, card)
    elif outcome.new:
        context.send(update.effective_user.id, card)
    if outcome.new:
        context.card_changed(KIND, campaign_id)
        await _ask_next_question(update, context, outcome.view.campaign, outcome.signup)


async def _ask_next_question(update: Update, context: MoimContext, campaign, signup) -> None:
    """Ask the first unanswered question in the private chat (the answers flow remembers it)."""
    if not campaign.questions:
        return
    index = campaigns.first_unanswered(campaign, signup)
    user_id = update.effective_user.id
    if index is None:
        await _end_flow(context, user_id, ANSWER_FLOW)
        return
    await conversations.begin(
        context.session,
        chat_id=user_id,
        user_id=user_id,
        flow=ANSWER_FLOW,
        step="answer",
        data={"campaign_id": campaign.id, "index": index},
        now=context.now,
    )
    context.send(
        user_id,
        context.render(
            "campaigns/question.html", campaign=campaign, index=index, limits=campaigns
        ),
    )


@moim_handler()
async def cancel_pressed(update: Update, context: MoimContext) -> None:
    """Cancel from a card: asks to confirm (in the private chat) before giving up the place."""
    campaign_id = _campaign_id(update)
    if context.member is None:
        raise NotRegistered(payload=f"camp_{campaign_id}")
    view = await campaigns.before_cancelling(
        context.session, campaign_id=campaign_id, member=context.member, now=context.now
    )
    confirm = context.render("campaigns/cancel_confirm.html", view=view)
    if is_private(update):
        context.answer(update)
        _edit_here(update, context, confirm)
    else:
        context.answer(update, context.render("campaigns/toast.html", confirm=True).text)
        context.send(update.effective_user.id, confirm)


@moim_handler(private=True, registered=True)
async def cancel_confirmed(update: Update, context: MoimContext) -> None:
    """Yes, cancel: the place is given up and the next waiting people move up."""
    campaign_id = _campaign_id(update)
    outcome = await campaigns.cancel_signup(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        renderer=context.runtime.renderer,
    )
    context.answer(update, context.render("campaigns/toast.html", cancelled=True).text)
    _edit_here(update, context, _personal_card(context, outcome.view))
    context.card_changed(KIND, campaign_id)
    await _end_flow(context, update.effective_user.id, ANSWER_FLOW)


@moim_handler(private=True, registered=True)
async def keep_pressed(update: Update, context: MoimContext) -> None:
    """No, keep my place: back to the card."""
    view = await campaigns.card_view(
        context.session, _campaign_id(update), now=context.now, member=context.member
    )
    context.answer(update)
    _edit_here(update, context, _personal_card(context, view))


# --- questions --------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def answer_pressed(update: Update, context: MoimContext) -> None:
    """ "Answer the questions": ask the first one still open."""
    view = await campaigns.card_view(
        context.session, _campaign_id(update), now=context.now, member=context.member
    )
    if view.mine is None:
        raise campaigns.NotSignedUp(title=view.campaign.title)
    if not view.unanswered:  # answered meanwhile: show the card without the button
        context.answer(update, context.render("campaigns/toast.html", answered=True).text)
        _edit_here(update, context, _personal_card(context, view))
        return
    context.answer(update)
    await _ask_next_question(update, context, view.campaign, view.mine)


@moim_handler(private=True, registered=True)
async def choice_pressed(update: Update, context: MoimContext) -> None:
    """A choice answered with its button."""
    parsed = callback(update)
    index, choice = parsed.int_arg(1), parsed.int_arg(2)
    if index is None or choice is None:
        raise StaleButton()
    outcome = await campaigns.answer_question(
        context.session,
        campaign_id=_campaign_id(update),
        member=context.member,
        index=index,
        choice=choice,
    )
    context.answer(update)
    _edit_here(update, context, _answered(context, outcome, index))
    await _ask_next_question(update, context, outcome.campaign, outcome.signup)


def _answered(context: MoimContext, outcome, index: int):
    return context.render(
        "campaigns/answered.html",
        campaign=outcome.campaign,
        index=index,
        answer=outcome.signup.answers[str(index)],
        done=outcome.next_index is None,
    )


@moim_handler(private=True, registered=True)
async def answer_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer to the question being asked."""
    index = state.data["index"]
    outcome = await campaigns.answer_question(
        context.session,
        campaign_id=state.data["campaign_id"],
        member=context.member,
        index=index,
        text=update.effective_message.text,
    )
    context.reply(update, _answered(context, outcome, index))
    await _ask_next_question(update, context, outcome.campaign, outcome.signup)


# --- /me --------------------------------------------------------------------------------------


async def me_section(context: MoimContext, member) -> str:
    """The person's sign-ups for /me: confirmed, or their place on the waitlist."""
    items = await campaigns.my_signups(context.session, member, now=context.now)
    if not items:
        return ""
    return context.render("campaigns/me_section.html", items=items).text


# --- organisers: lists and overview -----------------------------------------------------------


@moim_handler(private=True, registered=True)
async def list_campaigns(update: Update, context: MoimContext) -> None:
    """/campaigns [short-name]: the organisation's campaigns, newest first."""
    org = await resolve_org(
        update,
        context,
        command_text(update) or None,
        choose_action="camp:list",
        action="campaign.list",
    )
    if org is not None:
        context.reply(update, await _list(context, org, 0))


async def _list(context: MoimContext, org, offset: int):
    items, total = await campaigns.org_campaigns(
        context.session, org, offset=offset, limit=LIST_PAGE
    )
    return context.render(
        "campaigns/list.html",
        org=org,
        items=items,
        total=total,
        offset=offset,
        page_size=LIST_PAGE,
        now=context.now,
    )


@moim_handler(private=True, registered=True)
async def list_page(update: Update, context: MoimContext) -> None:
    """Paging through /campaigns (or the organisation chosen for it)."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="campaign.list"
    )
    offset = parsed.int_arg(1)
    context.answer(update)
    if offset is None:
        context.reply(update, await _list(context, org, 0))
    else:
        _edit_here(update, context, await _list(context, org, max(0, offset)))


def _number_argument(update: Update, command: str) -> int:
    text = command_text(update).lstrip("#")
    if not text.isdigit():
        raise campaigns.InvalidCampaign(field="usage", command=command)
    return int(text)


@moim_handler(private=True, registered=True)
async def show_campaign(update: Update, context: MoimContext) -> None:
    """/campaign ID: organisers get the overview with its actions; others the card."""
    campaign_id = _number_argument(update, "campaign")
    overview = await campaigns.overview_or_card(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    if isinstance(overview, campaigns.Overview):
        context.reply(update, context.render("campaigns/manage.html", o=overview))
    else:
        context.reply(update, _personal_card(context, overview))


async def _overview(context: MoimContext, campaign_id: int, edit=None):
    overview = await campaigns.overview(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    return context.render("campaigns/manage.html", o=overview, edit=edit)


@moim_handler(private=True, registered=True)
async def edit_campaign(update: Update, context: MoimContext) -> None:
    """/edit_campaign ID | 정원 60 | 마감 12월 18일 18:00: change a campaign, then its overview."""
    head, _, options = command_text(update).partition("|")
    number = head.strip().lstrip("#")
    if not number.isdigit():
        raise campaigns.InvalidCampaign(field="usage", command="edit_campaign")
    edit = await campaigns.edit_campaign(
        context.session,
        campaign_id=int(number),
        actor=context.member,
        text=options,
        now=context.now,
        renderer=context.runtime.renderer,
        is_bot_admin=await context.is_admin(),
    )
    context.card_changed(KIND, edit.campaign.id)
    context.reply(update, await _overview(context, edit.campaign.id, edit))


@moim_handler(private=True, registered=True)
async def manage_pressed(update: Update, context: MoimContext) -> None:
    """A campaign chosen in /campaigns (a new message) or "back" (the same message)."""
    parsed = callback(update)
    rendered = await _overview(context, _campaign_id(update))
    context.answer(update)
    if parsed.str_arg(1) == "back":
        _edit_here(update, context, rendered)
    else:
        context.reply(update, rendered)


@moim_handler(private=True, registered=True)
async def open_pressed(update: Update, context: MoimContext) -> None:
    """Open a draft (or reopen) for sign-ups."""
    await _change_status(update, context, campaigns.open_campaign)


async def _change_status(update: Update, context: MoimContext, change) -> None:
    """Open or close; the overview and the posted cards show it."""
    campaign_id = _campaign_id(update)
    await change(
        context.session,
        campaign_id=campaign_id,
        actor=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    _edit_here(update, context, await _overview(context, campaign_id))
    context.card_changed(KIND, campaign_id)


@moim_handler(private=True, registered=True)
async def close_pressed(update: Update, context: MoimContext) -> None:
    """Close early: ask to confirm first."""
    campaign_id = _campaign_id(update)
    overview = await campaigns.overview(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    _edit_here(update, context, context.render("campaigns/close_confirm.html", o=overview))


@moim_handler(private=True, registered=True)
async def close_confirmed(update: Update, context: MoimContext) -> None:
    """Sign-ups closed; the cards say so."""
    await _change_status(update, context, campaigns.close_campaign)


# --- organisers: sign-ups and exports ---------------------------------------------------------


async def _signups(context: MoimContext, campaign_id: int, offset: int):
    page = await campaigns.signups_page(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        offset=offset,
        limit=SIGNUPS_PAGE,
        is_bot_admin=await context.is_admin(),
    )
    return context.render("campaigns/signups.html", page=page, page_size=SIGNUPS_PAGE)


@moim_handler(private=True, registered=True)
async def show_signups(update: Update, context: MoimContext) -> None:
    """/signups ID: confirmed people and the waitlist with their answers."""
    context.reply(update, await _signups(context, _number_argument(update, "signups"), 0))


@moim_handler(private=True, registered=True)
async def signups_page(update: Update, context: MoimContext) -> None:
    """Paging through /signups (or opening it from the overview)."""
    parsed = callback(update)
    campaign_id, offset = _campaign_id(update), parsed.int_arg(1)
    context.answer(update)
    if offset is None:
        context.reply(update, await _signups(context, campaign_id, 0))
    else:
        _edit_here(update, context, await _signups(context, campaign_id, max(0, offset)))


def _labels(context: MoimContext) -> dict[str, str]:
    """Column headers and status words for spreadsheets, in the person's language."""
    text = context.runtime.renderer.text("campaigns/export_labels.txt", context.language)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@moim_handler(private=True, registered=True)
async def export_pressed(update: Update, context: MoimContext) -> None:
    """The sign-ups with their answers (camp:export), or the survey (camp:sexport), as CSV
    (UTF-8 with BOM) or XLSX."""
    parsed = callback(update)
    fmt = parsed.str_arg(1)
    if fmt not in FORMATS:
        raise StaleButton()
    survey = parsed.verb == "sexport"
    export = await (campaigns.export_survey if survey else campaigns.export_signups)(
        context.session,
        campaign_id=_campaign_id(update),
        member=context.member,
        fmt=fmt,
        labels=_labels(context),
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    context.send_document(
        update.effective_chat.id,
        filename=export.filename,
        data=export.data,
        caption=context.render("campaigns/export_caption.html", fmt=fmt, survey=survey),
    )


# --- organisers: a message to everyone signed up ----------------------------------------------


@moim_handler(private=True, registered=True)
async def notice_pressed(update: Update, context: MoimContext) -> None:
    """ "Message the sign-ups": ask for the text."""
    campaign_id = _campaign_id(update)
    campaign, _, _ = await campaigns.notice_audience(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=NOTICE_FLOW,
        step="text",
        data={"campaign_id": campaign_id},
        now=context.now,
    )
    context.answer(update)
    context.reply(
        update,
        context.render("campaigns/notice_ask.html", campaign=campaign, limit=campaigns.MAX_NOTICE),
    )


@moim_handler(private=True, registered=True)
async def notice_text(update: Update, context: MoimContext, state) -> None:
    """The announcement's text: show how it will look, and to whom it can go."""
    text = campaigns.clean_notice(update.effective_message.text)
    campaign, confirmed, waiting = await campaigns.notice_audience(
        context.session,
        campaign_id=state.data["campaign_id"],
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    await conversations.advance(context.session, state, step="confirm", now=context.now, text=text)
    org = await organizations.by_id(context.session, campaign.organization_id)
    context.reply(
        update,
        context.render(
            "campaigns/notice_preview.html",
            campaign=campaign,
            org=org,
            text=text,
            confirmed=confirmed,
            waiting=waiting,
        ),
    )


@moim_handler(private=True, registered=True)
async def send_pressed(update: Update, context: MoimContext) -> None:
    """Send the announcement to the confirmed people (and the waitlist, if chosen)."""
    parsed = callback(update)
    state = await _flow_state(update, context, NOTICE_FLOW)
    campaign_id = _campaign_id(update)
    if state is None or state.step != "confirm" or state.data.get("campaign_id") != campaign_id:
        raise StaleButton()
    if parsed.str_arg(1) not in ("0", "1"):  # "Cancel"
        await conversations.finish(
            context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
        )
        context.answer(update)
        _edit_here(update, context, context.render("common/cancelled.html", ended=True))
        return
    delivery = context.runtime.config.delivery
    sent = await campaigns.announce(
        context.session,
        campaign_id=campaign_id,
        actor=context.member,
        text=state.data["text"],
        include_waitlisted=parsed.str_arg(1) == "1",
        now=context.now,
        renderer=context.runtime.renderer,
        quiet_hours=(delivery.quiet_hours_start, delivery.quiet_hours_end),
        is_bot_admin=await context.is_admin(),
    )
    await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    context.answer(update)
    org = await organizations.by_id(context.session, sent.campaign.organization_id)
    _edit_here(update, context, context.render("campaigns/notice_queued.html", sent=sent, org=org))


# --- the survey -------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def rate_pressed(update: Update, context: MoimContext) -> None:
    """A rating 1–5 from the survey message; then an optional comment."""
    campaign_id = _campaign_id(update)
    rating = callback(update).int_arg(1)
    if rating is None:
        raise StaleButton()
    response = await campaigns.rate(
        context.session,
        campaign_id=campaign_id,
        member=context.member,
        rating=rating,
        now=context.now,
    )
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=COMMENT_FLOW,
        step="comment",
        data={"campaign_id": campaign_id},
        now=context.now,
    )
    context.answer(update)
    _edit_here(
        update,
        context,
        context.render(
            "campaigns/rated.html", response=response, limit=campaigns.MAX_COMMENT, done=False
        ),
    )


@moim_handler(private=True, registered=True)
async def comment_text(update: Update, context: MoimContext, state) -> None:
    """The comment after the rating."""
    response = await campaigns.comment(
        context.session,
        campaign_id=state.data["campaign_id"],
        member=context.member,
        text=update.effective_message.text,
        now=context.now,
    )
    await conversations.finish(
        context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    )
    context.reply(update, context.render("campaigns/commented.html", response=response))


@moim_handler(private=True, registered=True)
async def no_comment_pressed(update: Update, context: MoimContext) -> None:
    """No comment: the rating alone is kept."""
    state = await _flow_state(update, context, COMMENT_FLOW)
    if state is not None and state.data.get("campaign_id") == _campaign_id(update):
        await conversations.finish(
            context.session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
        )
    context.answer(update)
    _edit_here(update, context, context.render("campaigns/commented.html", response=None))


@moim_handler(private=True, registered=True)
async def survey_pressed(update: Update, context: MoimContext) -> None:
    """The survey's results: average, distribution and the latest comments."""
    results = await campaigns.survey_results(
        context.session,
        campaign_id=_campaign_id(update),
        member=context.member,
        now=context.now,
        is_bot_admin=await context.is_admin(),
    )
    context.answer(update)
    context.reply(update, context.render("campaigns/survey_results.html", r=results))


# --- scheduled work ---------------------------------------------------------------------------


async def deadline_job(context: JobContext, job: ScheduledJob) -> None:
    """Sign-ups ended: organisers get the final counts, the cards lose their buttons."""
    campaign = await campaigns.deadline_reached(
        context.session,
        campaign_id=job.payload["campaign_id"],
        now=context.now,
        renderer=context.runtime.renderer,
    )
    if campaign is not None:
        context.card_changed(KIND, campaign.id)


async def survey_job(context: JobContext, job: ScheduledJob) -> None:
    """After the event: the satisfaction survey to everyone confirmed."""
    delivery = context.runtime.config.delivery
    await campaigns.send_survey(
        context.session,
        campaign_id=job.payload["campaign_id"],
        now=context.now,
        renderer=context.runtime.renderer,
        quiet_hours=(delivery.quiet_hours_start, delivery.quiet_hours_end),
    )
