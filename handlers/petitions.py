"""Petitions: create (guided or in one line), sign from a link or a group card, withdraw,
comment, full text in parts; organisers' summary, exports, closing; the closing job."""

from __future__ import annotations

import datetime as dt

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.runtime import Audience, CardKind, CardRequest
from bot.scheduler import JobContext
from bot.services import conversations, organizations, petitions
from bot.services.errors import NotOrganizer, NotRegistered, StaleButton
from bot.services.privacy import PrivacyHook
from handlers.common import (
    callback,
    command_text,
    flow_button,
    is_private,
    moim_handler,
    org_from_button,
)
from models import Member, Petition, ScheduledJob

FLOW = "new_petition"
LIMITER = "petition_taps"
EXPORT_KINDS = ("csv", "xlsx", "html")


def register(app: MoimApplication) -> None:
    """Add the petitions feature's commands, buttons, card, deep link, job and privacy hook."""
    features = app.runtime.features
    app.runtime.extras[LIMITER] = petitions.TapLimiter()
    app.add_handler(CommandHandler("new_petition", new_petition))
    app.add_handler(CommandHandler("signatures", signatures))
    app.add_handler(CommandHandler("close_petition", close_command))
    app.add_handler(CallbackQueryHandler(new_petition_step, pattern=pattern("petnew")))
    for action, handler in (
        ("pet:sign", sign_pressed),
        ("pet:unsign", withdraw_pressed),
        ("pet:text", full_text_pressed),
        ("pet:name", name_pressed),
        ("pet:cmt", comment_pressed),
        ("pet:sum", summary_pressed),
        ("pet:exp", export_pressed),
        ("pet:close", close_pressed),
        ("pet:closeyes", close_confirmed),
        ("pet:notify", notify_pressed),
    ):
        app.add_handler(CallbackQueryHandler(handler, pattern=pattern(action)))
    features.deep_links["pet"] = open_petition_link
    features.flows[FLOW] = new_petition_text
    features.flows[petitions.COMMENT_FLOW] = comment_text
    features.add_job(petitions.CLOSE_JOB, close_due)
    features.cards["petition"] = CardKind(
        kind="petition",
        postable=petitions.postable,
        owner=petitions.owner,
        render=render_card,
        label_template="petitions/label.txt",
    )
    features.audiences["petition"] = Audience(
        key="petition",
        variants=("signers",),
        items=petitions.audience_items,
        member_ids=petitions.audience_member_ids,
        label_template="petitions/audience_label.html",
    )
    features.privacy.append(
        PrivacyHook(name="petitions", export=petitions.export_member, erase=petitions.erase_member)
    )
    features.me_sections.append(me_section)
    features.help_templates.append("petitions/help.html")


def _limiter(context: MoimContext) -> petitions.TapLimiter:
    return context.runtime.extras[LIMITER]


def _replace_pressed(update: Update, context: MoimContext, rendered) -> None:
    """Answer the press and show ``rendered`` in place of the pressed message."""
    context.answer(update)
    message = update.effective_message
    context.edit(message.chat_id, message.message_id, rendered)


def _flag(update: Update) -> bool:
    """The yes/no (1/0) after the petition's number in the pressed button."""
    parsed = callback(update)
    value = parsed.str_arg(1) if parsed else None
    if value not in ("0", "1"):
        raise StaleButton()
    return value == "1"


def _petition_id(update: Update) -> int:
    parsed = callback(update)
    petition_id = parsed.int_arg(0) if parsed else None
    if petition_id is None:
        raise StaleButton()
    return petition_id


# --- what citizens see --------------------------------------------------------------------------


async def render_card(request: CardRequest):
    """The live card in a group: title, addressee, summary, count against the goal, buttons."""
    found = await petitions.card(request.session, request.item_id)
    if found is None:
        return None
    petition, org = found
    return request.render(
        "petitions/card.html",
        petition=petition,
        org=org,
        summary=petitions.summary_of(petition.body),
        in_group=True,
        signed=False,
        sponsor=0,
    )


def _view(context: MoimContext, shown: petitions.PetitionView):
    return context.render(
        "petitions/card.html",
        petition=shown.petition,
        org=shown.org,
        summary=petitions.summary_of(shown.petition.body),
        in_group=False,
        signed=shown.signed,
        sponsor=shown.sponsor_id or 0,
    )


async def open_petition_link(update: Update, context: MoimContext, arg: str) -> None:
    """Deep link pet_<id> (or pet_<id>_<group>): the petition, ready to sign."""
    shown = await petitions.open_link(context.session, arg=arg, member=context.member)
    context.reply(update, _view(context, shown))


def _signed(context: MoimContext, petition: Petition, *, choice=None, comment=None):
    return context.render(
        "petitions/signed.html",
        petition=petition,
        member=context.member,
        choice=choice,
        comment=comment,
        comment_limit=petitions.MAX_COMMENT,
    )


@moim_handler()
async def sign_pressed(update: Update, context: MoimContext) -> None:
    """Sign: one tap on the group card or the petition in the private chat."""
    petition_id = _petition_id(update)
    if context.member is None:
        raise NotRegistered(payload=f"pet_{petition_id}")
    parsed = callback(update)
    outcome = await petitions.sign_petition(
        context.session,
        member=context.member,
        petition_id=petition_id,
        now=context.now,
        renderer=context.runtime.renderer,
        limiter=_limiter(context),
        chat_id=update.effective_chat.id,
        sponsor_hint=parsed.int_arg(1),
    )
    signed = _signed(context, outcome.petition)
    if not is_private(update):
        toast = context.render("petitions/signed_toast.html", petition=outcome.petition)
        context.answer(update, toast.text)
        context.send(update.effective_user.id, signed)
    elif parsed.str_arg(2) == "e":  # the petition's own message: it becomes the confirmation
        _replace_pressed(update, context, signed)
    else:
        context.answer(update)
        context.reply(update, signed)
    context.card_changed("petition", petition_id)


@moim_handler(private=True, registered=True)
async def withdraw_pressed(update: Update, context: MoimContext) -> None:
    """Take the signature back (while the petition is open)."""
    petition_id = _petition_id(update)
    petition = await petitions.withdraw_signature(
        context.session,
        member=context.member,
        petition_id=petition_id,
        now=context.now,
        limiter=_limiter(context),
    )
    _replace_pressed(
        update, context, context.render("petitions/withdrawn.html", petition=petition)
    )
    context.card_changed("petition", petition_id)


@moim_handler()
async def full_text_pressed(update: Update, context: MoimContext) -> None:
    """Read full text: sent to the private chat, in parts if it is long."""
    petition_id = _petition_id(update)
    if context.member is None:
        raise NotRegistered(payload=f"pet_{petition_id}")
    shown = await petitions.read_full_text(
        context.session,
        member=context.member,
        petition_id=petition_id,
        now=context.now,
        limiter=_limiter(context),
    )
    if is_private(update):
        context.answer(update)
    else:
        context.answer(update, context.render("petitions/text_sent_toast.html").text)
    context.send(
        update.effective_user.id,
        context.render(
            "petitions/full_text.html",
            petition=shown.petition,
            org=shown.org,
            signed=shown.signed,
        ),
    )


@moim_handler(private=True, registered=True)
async def name_pressed(update: Update, context: MoimContext) -> None:
    """The answer to "may your name be shown?"."""
    petition, signature = await petitions.set_name_public(
        context.session,
        member=context.member,
        petition_id=_petition_id(update),
        public=_flag(update),
        now=context.now,
        limiter=_limiter(context),
    )
    _replace_pressed(
        update,
        context,
        _signed(context, petition, choice=signature.public, comment=signature.comment),
    )


@moim_handler(private=True, registered=True)
async def comment_pressed(update: Update, context: MoimContext) -> None:
    """Add a comment: the next message is it."""
    petition = await petitions.start_comment(
        context.session,
        member=context.member,
        petition_id=_petition_id(update),
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
        limiter=_limiter(context),
    )
    context.answer(update)
    context.reply(
        update,
        context.render(
            "petitions/comment_ask.html", petition=petition, limit=petitions.MAX_COMMENT
        ),
    )


@moim_handler(private=True, registered=True)
async def comment_text(update: Update, context: MoimContext, state) -> None:
    """The comment itself (too long: the limit is named and the step stays open)."""
    petition, signature = await petitions.add_comment(
        context.session,
        member=context.member,
        petition_id=int(state.data["petition_id"]),
        text=update.effective_message.text,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
    )
    context.reply(
        update,
        context.render(
            "petitions/comment_saved.html", petition=petition, comment=signature.comment
        ),
    )


async def me_section(context: MoimContext, member: Member) -> str:
    """/me: the petitions this person has signed."""
    rows, total = await petitions.signed_by(context.session, member)
    if not total:
        return ""
    return context.runtime.renderer.text(
        "petitions/me_section.html", context.language, rows=rows, total=total
    )


# --- creating -----------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def new_petition(update: Update, context: MoimContext) -> None:
    """/new_petition: step by step; or at once: TITLE | TO WHOM | GOAL [| options]."""
    text = command_text(update)
    if text:
        await _one_line(update, context, text)
        return
    orgs = await organizations.organizer_orgs(
        context.session, context.member, is_bot_admin=await context.is_admin()
    )
    if not orgs:
        raise NotOrganizer(org="", action="petition.create")
    one = len(orgs) == 1
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=FLOW,
        step="title" if one else "org",
        data={"org_id": orgs[0].id} if one else {},
        now=context.now,
    )
    if one:
        context.reply(update, context.render("petitions/ask_title.html", org=orgs[0]))
    else:
        context.reply(update, context.render("petitions/ask_org.html", orgs=orgs))


async def _one_line(update: Update, context: MoimContext, text: str) -> None:
    parsed = await petitions.parse_one_line(
        context.session,
        member=context.member,
        text=text,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    draft = {
        "org_id": parsed.org.id,
        "title": parsed.title,
        "addressee": parsed.addressee,
        "goal": parsed.goal,
        "closes_at": parsed.closes_at.isoformat() if parsed.closes_at else None,
        "public_names": parsed.public_names,
        "notify": parsed.notify_signers,
        "body": "",
    }
    if parsed.body is None:
        await conversations.begin(
            context.session,
            chat_id=update.effective_chat.id,
            user_id=update.effective_user.id,
            flow=FLOW,
            step="text",
            data=draft,
            now=context.now,
        )
        context.reply(update, _ask_text(context, draft))
        return
    await _create(update, context, {**draft, "body": parsed.body}, org=parsed.org)


def _ask_text(context: MoimContext, draft: dict):
    return context.render(
        "petitions/ask_text.html", draft=draft, limit=petitions.MAX_BODY, length=0
    )


async def _create(update: Update, context: MoimContext, draft: dict, *, org=None) -> None:
    org = org or await organizations.by_id(context.session, draft["org_id"])
    petition = await petitions.create_petition(
        context.session,
        actor=context.member,
        org=org,
        title=draft["title"],
        addressee=draft["addressee"],
        goal=int(draft["goal"]),
        body=draft["body"],
        closes_at=_moment(draft.get("closes_at")),
        public_names=bool(draft["public_names"]),
        notify_signers=bool(draft.get("notify")),
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    context.reply(update, context.render("petitions/created.html", petition=petition, org=org))


def _moment(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _draft_petition(draft: dict, org) -> Petition:
    """An unsaved petition showing what the draft will look like."""
    return Petition(
        organization_id=org.id,
        title=draft["title"],
        addressee=draft["addressee"],
        body=draft["body"],
        goal=int(draft["goal"]),
        closes_at=_moment(draft.get("closes_at")),
        public_names=bool(draft["public_names"]),
        notify_signers=bool(draft.get("notify")),
        signature_count=0,
    )


async def _preview(context: MoimContext, draft: dict):
    org = await organizations.by_id(context.session, draft["org_id"])
    petition = _draft_petition(draft, org)
    return context.render(
        "petitions/preview.html",
        petition=petition,
        org=org,
        summary=petitions.summary_of(petition.body),
        length=len(petition.body),
    )


@moim_handler(private=True, registered=True)
async def new_petition_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer inside /new_petition: title, addressee, goal, closing date, full text."""
    text = update.effective_message.text
    session, now, step = context.session, context.now, state.step
    if step == "title":
        title = petitions.clean_title(text)
        await conversations.advance(session, state, step="addressee", now=now, title=title)
        context.reply(update, context.render("petitions/ask_addressee.html", title=title))
    elif step == "addressee":
        addressee = petitions.clean_addressee(text)
        await conversations.advance(session, state, step="goal", now=now, addressee=addressee)
        context.reply(update, context.render("petitions/ask_goal.html"))
    elif step == "goal":
        goal = petitions.parse_goal(text)
        await conversations.advance(session, state, step="closes", now=now, goal=goal)
        context.reply(update, context.render("petitions/ask_closes.html", goal=goal))
    elif step == "closes":
        org = await organizations.by_id(session, state.data["org_id"])
        closes_at = petitions.parse_closing(text, now=now, timezone=org.timezone)
        await conversations.advance(
            session, state, step="names", now=now, closes_at=closes_at.isoformat()
        )
        context.reply(
            update, context.render("petitions/ask_names.html", closes_at=closes_at, org=org)
        )
    elif step == "text":
        so_far = state.data.get("body", "")
        body = f"{so_far}\n{text}" if so_far else text
        if len(body) > petitions.MAX_BODY:
            raise petitions.InvalidPetition(
                field="body", reason="too_long", limit=petitions.MAX_BODY, length=len(body)
            )
        await conversations.advance(session, state, step="text", now=now, body=body)
        context.reply(
            update,
            context.render(
                "petitions/text_received.html", length=len(body), limit=petitions.MAX_BODY
            ),
        )
    else:
        context.reply(update, context.render("petitions/use_buttons.html"))


@moim_handler(private=True, registered=True)
async def new_petition_step(update: Update, context: MoimContext) -> None:
    """A button inside /new_petition: organisation, no closing date, names, done, create."""
    parsed, state = await flow_button(update, context, FLOW)
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    session, now = context.session, context.now
    verb, value, step = parsed.verb, parsed.str_arg(0), state.step
    if verb == "org" and step == "org":
        org = await org_from_button(update, context, parsed.int_arg(0), action="petition.create")
        await conversations.advance(session, state, step="title", now=now, org_id=org.id)
        context.answer(update)
        context.reply(update, context.render("petitions/ask_title.html", org=org))
    elif verb == "noclose" and step == "closes":
        await conversations.advance(session, state, step="names", now=now, closes_at=None)
        context.answer(update)
        context.reply(update, context.render("petitions/ask_names.html", closes_at=None))
    elif verb == "names" and step == "names" and value in ("0", "1"):
        await conversations.advance(
            session, state, step="text", now=now, public_names=value == "1", body=""
        )
        context.answer(update)
        context.reply(update, _ask_text(context, state.data))
    elif verb == "done" and step == "text":
        body = petitions.clean_body(state.data.get("body", ""))
        await conversations.advance(session, state, step="preview", now=now, body=body)
        context.answer(update)
        context.reply(update, await _preview(context, state.data))
    elif verb == "notify" and step == "preview" and value in ("0", "1"):
        await conversations.advance(session, state, step="preview", now=now, notify=value == "1")
        _replace_pressed(update, context, await _preview(context, state.data))
    elif verb == "create" and step == "preview":
        await _create(update, context, state.data)
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.answer(update)
    elif verb == "cancel":
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.answer(update)
        context.reply(update, context.render("common/cancelled.html", ended=True))
    else:
        raise StaleButton()


# --- organisers ---------------------------------------------------------------------------------


def _number(text: str) -> int | None:
    word = text.strip().lstrip("#")
    return int(word) if word.isdigit() and len(word) <= 12 else None


async def _summary(context: MoimContext, petition_id: int):
    summary = await petitions.summarise(
        context.session,
        actor=context.member,
        petition_id=petition_id,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    return context.render("petitions/summary.html", s=summary)


@moim_handler(private=True, registered=True)
async def signatures(update: Update, context: MoimContext) -> None:
    """/signatures [ID]: the summary with exports and closing; without ID, the list."""
    text = command_text(update)
    if not text:
        found = await petitions.organizer_petitions(
            context.session, context.member, is_bot_admin=await context.is_admin()
        )
        context.reply(update, context.render("petitions/choose_petition.html", petitions=found))
        return
    petition_id = _number(text)
    if petition_id is None:
        raise petitions.InvalidPetition(field="signatures", reason="usage")
    context.reply(update, await _summary(context, petition_id))


@moim_handler(private=True, registered=True)
async def summary_pressed(update: Update, context: MoimContext) -> None:
    """A petition chosen from the /signatures list."""
    petition_id = _petition_id(update)
    rendered = await _summary(context, petition_id)
    context.answer(update)
    context.reply(update, rendered)


@moim_handler(private=True, registered=True)
async def export_pressed(update: Update, context: MoimContext) -> None:
    """CSV, Excel, or the printable page to hand over, as a document."""
    petition_id = _petition_id(update)
    kind = callback(update).str_arg(1)
    if kind not in EXPORT_KINDS:
        raise StaleButton()
    session, now, is_admin = context.session, context.now, await context.is_admin()
    if kind == "html":
        page = await petitions.printable(
            session, actor=context.member, petition_id=petition_id, is_bot_admin=is_admin, now=now
        )
        data = context.render("petitions/printable.html", p=page, now=now).text.encode("utf-8")
        petition, filename = page.petition, f"petition-{petition_id}-{now:%Y%m%d}.html"
    else:
        labels = context.runtime.renderer.text("petitions/export_labels.txt", context.language)
        headers, private_label = labels.splitlines()[:-1], labels.splitlines()[-1]
        petition, filename, data = await petitions.export_table(
            session,
            actor=context.member,
            petition_id=petition_id,
            kind=kind,
            headers=headers,
            private_label=private_label,
            is_bot_admin=is_admin,
            now=now,
        )
    context.answer(update)
    context.send_document(
        update.effective_chat.id,
        filename=filename,
        data=data,
        caption=context.render("petitions/export_caption.html", petition=petition, kind=kind),
    )


@moim_handler(private=True, registered=True)
async def close_command(update: Update, context: MoimContext) -> None:
    """/close_petition ID: asks to confirm, then closes and tells the signers."""
    petition_id = _number(command_text(update))
    if petition_id is None:
        raise petitions.InvalidPetition(field="close", reason="usage")
    context.reply(update, await _close_question(context, petition_id))


async def _close_question(context: MoimContext, petition_id: int):
    petition, _ = await petitions.organiser_petition(
        context.session,
        actor=context.member,
        petition_id=petition_id,
        action="petition.close",
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    if petition.status != "open":
        raise petitions.PetitionClosed(title=petition.title, count=petition.signature_count)
    return context.render("petitions/close_confirm.html", petition=petition)


@moim_handler(private=True, registered=True)
async def close_pressed(update: Update, context: MoimContext) -> None:
    """ "Close now" in the summary: asks to confirm."""
    rendered = await _close_question(context, _petition_id(update))
    context.answer(update)
    context.reply(update, rendered)


@moim_handler(private=True, registered=True)
async def close_confirmed(update: Update, context: MoimContext) -> None:
    """Closing confirmed: closed now; signers and organisers get the final count."""
    petition_id = _petition_id(update)
    petition = await petitions.close_petition(
        context.session,
        petition_id=petition_id,
        now=context.now,
        renderer=context.runtime.renderer,
        actor=context.member,
        is_bot_admin=await context.is_admin(),
    )
    _replace_pressed(
        update, context, context.render("petitions/closed_by_hand.html", petition=petition)
    )
    context.card_changed("petition", petition_id)


@moim_handler(private=True, registered=True)
async def notify_pressed(update: Update, context: MoimContext) -> None:
    """Switch milestone news to signers on or off."""
    petition_id = _petition_id(update)
    await petitions.set_notify_signers(
        context.session,
        actor=context.member,
        petition_id=petition_id,
        notify=_flag(update),
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    _replace_pressed(update, context, await _summary(context, petition_id))


# --- at the closing time ------------------------------------------------------------------------


async def close_due(job_context: JobContext, job: ScheduledJob) -> None:
    """The closing job: close (once, even if closed by hand meanwhile) and tell the signers."""
    petition = await petitions.close_petition(
        job_context.session,
        petition_id=int(job.payload["petition_id"]),
        now=job_context.now,
        renderer=job_context.runtime.renderer,
    )
    if petition is not None:
        job_context.card_changed("petition", petition.id)
