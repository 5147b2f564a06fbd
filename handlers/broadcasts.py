"""Announcements: /broadcast (write, choose who, preview, send or schedule), /broadcasts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.render import Rendered
from bot.runtime import Runtime
from bot.scheduler import JobContext
from bot.services import broadcasts, conversations, organizations, outbox, timeparse
from bot.services.errors import StaleButton
from bot.services.privacy import PrivacyHook
from handlers.common import callback, command_text, moim_handler, org_from_button, resolve_org
from models import Broadcast, Organization, ScheduledJob

FLOW = "broadcast"
ITEMS_SHOWN = 20


def register(app: MoimApplication) -> None:
    """Add the announcements feature's handlers."""
    features = app.runtime.features
    app.add_handler(CommandHandler("broadcast", broadcast))
    app.add_handler(CommandHandler("broadcasts", list_broadcasts))
    app.add_handler(CallbackQueryHandler(org_chosen, pattern=pattern("bc:org")))
    app.add_handler(CallbackQueryHandler(audience_chosen, pattern=pattern("bc:aud")))
    app.add_handler(CallbackQueryHandler(feature_chosen, pattern=pattern("bc:feat")))
    app.add_handler(CallbackQueryHandler(item_chosen, pattern=pattern("bc:item")))
    app.add_handler(CallbackQueryHandler(variant_chosen, pattern=pattern("bc:var")))
    app.add_handler(CallbackQueryHandler(preview_pressed, pattern=pattern("bc:do")))
    app.add_handler(CallbackQueryHandler(cancel_pressed, pattern=pattern("bc:cancel")))
    features.flows[FLOW] = text_sent
    features.media_flows[FLOW] = media_sent
    features.add_job(broadcasts.JOB_KIND, start_scheduled)
    features.batch_done[broadcasts.BATCH_PREFIX] = broadcast_finished
    features.help_templates.append("broadcasts/help.html")
    features.privacy.append(
        PrivacyHook(
            name="broadcasts",
            export=broadcasts.export_authored,
            erase=lambda session, member, now: broadcasts.forget_author(session, member),
        )
    )


# --- writing ----------------------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def broadcast(update: Update, context: MoimContext) -> None:
    """/broadcast [short-name]: write an announcement to the organisation's members."""
    org = await resolve_org(
        update, context, command_text(update) or None, choose_action="bc:org", action="broadcast"
    )
    if org is not None:
        await _begin(update, context, org)


@moim_handler(private=True, registered=True)
async def org_chosen(update: Update, context: MoimContext) -> None:
    """The organisation chosen for /broadcast."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="broadcast"
    )
    context.answer(update)
    await _begin(update, context, org)


async def _begin(update: Update, context: MoimContext, org: Organization) -> None:
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=FLOW,
        step="message",
        data={"org": org.id},
        now=context.now,
    )
    context.reply(update, context.render("broadcasts/ask_message.html", org=org))


@moim_handler(private=True, registered=True)
async def text_sent(update: Update, context: MoimContext, state) -> None:
    """Free text in the flow: the announcement itself, or the time to send it."""
    message = update.effective_message
    if state.step == "message":
        await _take_message(update, context, state, message.text_html or "", "", "", "")
    elif state.step == "when":
        org = await _org(context, state)
        moment = timeparse.parse_when(message.text, now=context.now, timezone=org.timezone)
        timeparse.require_future(moment, now=context.now, text=message.text)
        await conversations.advance(
            context.session, state, step="preview", now=context.now, at=moment.isoformat()
        )
        await _preview(update, context, state)
    else:
        context.reply(update, context.render("broadcasts/use_buttons.html"))


@moim_handler(private=True, registered=True)
async def media_sent(update: Update, context: MoimContext, state) -> None:
    """A picture or a file sent while an announcement is being written: its attachment."""
    message = update.effective_message
    if state.step != "message":
        context.reply(update, context.render("broadcasts/use_buttons.html"))
        return
    if message.photo:
        kind, file_id, filename = "photo", message.photo[-1].file_id, ""
    else:
        document = message.document
        kind, file_id, filename = "document", document.file_id, document.file_name or "file"
    await _take_message(
        update, context, state, message.caption_html or "", kind, file_id, filename
    )


async def _take_message(
    update: Update,
    context: MoimContext,
    state,
    source: str,
    media_kind: str,
    file_id: str,
    filename: str,
) -> None:
    org = await _org(context, state)
    broadcasts.check_message(
        source,
        header=_header(context.runtime, org),
        org_name=org.name,
        has_media=bool(media_kind),
        media_kind=media_kind,
    )
    await conversations.advance(
        context.session,
        state,
        step="audience",
        now=context.now,
        body=source,
        media_kind=media_kind,
        file_id=file_id,
        filename=filename,
    )
    await _ask_audience(update, context, org)


# --- the audience -----------------------------------------------------------------------------


async def _ask_audience(update: Update, context: MoimContext, org: Organization) -> None:
    session = context.session
    registry = context.runtime.features.audiences
    choices = []
    for choice in broadcasts.builtin_audiences(org):
        _, member_ids = await broadcasts.resolve_audience(session, org, choice, registry)
        count = await broadcasts.count_audience(session, member_ids)
        choices.append({**choice, "count": count.total})
    features = [
        key
        for key, audience in sorted(registry.items())
        if await broadcasts.feature_items(session, org, audience)
    ]
    context.reply(
        update,
        context.render(
            "broadcasts/choose_audience.html", org=org, choices=choices, features=features
        ),
    )


@moim_handler(private=True, registered=True)
async def audience_chosen(update: Update, context: MoimContext) -> None:
    """Everyone, a tier, or the organisers (of the organisation or the whole network)."""
    parsed = callback(update)
    state, org = await _flow(update, context, "audience")
    segment = parsed.str_arg(0) if parsed else None
    choice = {"kind": "network" if org.kind == "network" else "org", "segment": segment}
    await _audience(update, context, state, org, choice)


@moim_handler(private=True, registered=True)
async def feature_chosen(update: Update, context: MoimContext) -> None:
    """A feature's audience (campaign, meeting, petition, poll): which of its items?"""
    parsed = callback(update)
    _state, org = await _flow(update, context, "audience")
    audience = context.runtime.features.audiences.get(parsed.str_arg(0) or "")
    if audience is None:
        raise StaleButton()
    items = await broadcasts.feature_items(context.session, org, audience)
    context.answer(update)
    context.reply(
        update,
        context.render("broadcasts/choose_item.html", key=audience.key, items=items[:ITEMS_SHOWN]),
    )


@moim_handler(private=True, registered=True)
async def item_chosen(update: Update, context: MoimContext) -> None:
    """An item of a feature audience: which of its people?"""
    parsed = callback(update)
    _state, org = await _flow(update, context, "audience")
    registry = context.runtime.features.audiences
    audience = registry.get(parsed.str_arg(0) or "")
    item_id = parsed.int_arg(1)
    if audience is None or item_id is None:
        raise StaleButton()
    variants = []
    for variant in audience.variants:
        choice = {"kind": "feature", "key": audience.key, "item": item_id, "variant": variant}
        clean, member_ids = await broadcasts.resolve_audience(
            context.session, org, choice, registry
        )
        count = await broadcasts.count_audience(context.session, member_ids)
        label = context.runtime.renderer.text(
            audience.label_template, context.language, variant=variant
        )
        variants.append({"variant": variant, "label": label, "count": count.total})
    context.answer(update)
    context.reply(
        update,
        context.render(
            "broadcasts/choose_variant.html",
            key=audience.key,
            item_id=item_id,
            title=clean["title"],
            variants=variants,
        ),
    )


@moim_handler(private=True, registered=True)
async def variant_chosen(update: Update, context: MoimContext) -> None:
    """The people of a feature audience chosen: the preview."""
    parsed = callback(update)
    state, org = await _flow(update, context, "audience")
    choice = {
        "kind": "feature",
        "key": parsed.str_arg(0),
        "item": parsed.int_arg(1),
        "variant": parsed.str_arg(2),
    }
    await _audience(update, context, state, org, choice)


async def _audience(update, context: MoimContext, state, org, choice: dict[str, Any]) -> None:
    registry = context.runtime.features.audiences
    clean, member_ids = await broadcasts.resolve_audience(context.session, org, choice, registry)
    count = await broadcasts.count_audience(context.session, member_ids)
    if count.recipients == 0:
        raise broadcasts.EmptyAudience(muted=count.muted, unreachable=count.unreachable)
    await conversations.advance(
        context.session, state, step="preview", now=context.now, audience=clean
    )
    context.answer(update)
    await _preview(update, context, state, with_copy=True)


# --- preview, time, sending -------------------------------------------------------------------


async def _preview(
    update: Update, context: MoimContext, state, *, with_copy: bool = False
) -> None:
    """What happens next, with the buttons; first the author's own copy (``with_copy``)."""
    runtime, session, draft = context.runtime, context.session, state.data
    org = await _org(context, state)
    _, member_ids = await broadcasts.resolve_audience(
        session, org, draft["audience"], runtime.features.audiences
    )
    count = await broadcasts.count_audience(session, member_ids)
    at = dt.datetime.fromisoformat(draft["at"]) if draft.get("at") else None
    timing = broadcasts.plan_timing(
        recipients=count.recipients,
        start=at or context.now,
        urgent=bool(draft.get("urgent")),
        rate=_rate(runtime),
        quiet_start=runtime.config.delivery.quiet_hours_start,
        quiet_end=runtime.config.delivery.quiet_hours_end,
        timezone=org.timezone,
    )
    if with_copy:
        body = broadcasts.check_body(draft["body"])
        text = broadcasts.compose(
            _header(runtime, org), body.render(name=context.member.display_name, org=org.name)
        )
        _send_copy(update, context, text, draft)
    context.reply(
        update,
        context.render(
            "broadcasts/preview.html",
            org=org,
            audience=audience_label(runtime, context.language, draft["audience"]),
            count=count,
            timing=timing,
            at=at,
            now=context.now,
            urgent=bool(draft.get("urgent")),
            quiet_start=runtime.config.delivery.quiet_hours_start,
            quiet_end=runtime.config.delivery.quiet_hours_end,
        ),
    )


def _send_copy(update: Update, context: MoimContext, text: str, draft: dict[str, Any]) -> None:
    chat_id = update.effective_chat.id
    rendered = Rendered(text=text)
    if draft.get("media_kind") == "photo":
        context.send_photo(chat_id, data=draft["file_id"], caption=rendered)
    elif draft.get("media_kind") == "document":
        # A Telegram file id is sent again as it is; the file name travels with it.
        context.send_document(
            chat_id, filename=draft["filename"], data=draft["file_id"], caption=rendered
        )
    else:
        context.send(chat_id, rendered)


@moim_handler(private=True, registered=True)
async def preview_pressed(update: Update, context: MoimContext) -> None:
    """A button under the preview: send, choose a time, send now, urgent, audience, cancel."""
    parsed = callback(update)
    verb = parsed.str_arg(0) if parsed else None
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    session, now = context.session, context.now
    if verb == "quit":
        if not await conversations.finish(session, chat_id=chat_id, user_id=user_id):
            raise StaleButton()
        context.answer(update)
        context.reply(update, context.render("broadcasts/discarded.html"))
        return
    state, org = await _flow(update, context, "preview", "when", "audience")
    context.answer(update)
    timing_step = state.step in ("preview", "when")
    if verb == "audience":
        await conversations.advance(session, state, step="audience", now=now)
        await _ask_audience(update, context, org)
    elif verb == "when" and timing_step:
        await conversations.advance(session, state, step="when", now=now)
        context.reply(update, context.render("broadcasts/ask_when.html", org=org))
    elif verb in ("now", "back") and timing_step:
        changes = {"at": None} if verb == "now" else {}
        await conversations.advance(session, state, step="preview", now=now, **changes)
        await _preview(update, context, state)
    elif verb in ("urgent", "calm") and timing_step:
        await conversations.advance(
            session, state, step="preview", now=now, urgent=verb == "urgent"
        )
        await _preview(update, context, state)
    elif verb == "send" and state.step == "preview":
        await _confirm(update, context, state, org)
    else:
        raise StaleButton()


async def _confirm(update: Update, context: MoimContext, state, org: Organization) -> None:
    runtime, session, draft = context.runtime, context.session, state.data
    if not await conversations.finish(
        session, chat_id=update.effective_chat.id, user_id=update.effective_user.id
    ):
        raise StaleButton()  # pressed twice: the first press sent it
    delivery = runtime.config.delivery
    at = dt.datetime.fromisoformat(draft["at"]) if draft.get("at") else None
    created, count = await broadcasts.create_broadcast(
        session,
        org=org,
        author=context.member,
        source=draft["body"],
        header=_header(runtime, org),
        media_kind=draft.get("media_kind", ""),
        media_file_id=draft.get("file_id", ""),
        media_filename=draft.get("filename", ""),
        audience=draft["audience"],
        registry=runtime.features.audiences,
        urgent=bool(draft.get("urgent")),
        requested_at=at,
        rate=_rate(runtime),
        quiet_start=delivery.quiet_hours_start,
        quiet_end=delivery.quiet_hours_end,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    if created.send_at <= context.now:
        await _start(runtime, session, created.id, context.now)
    context.reply(
        update,
        context.render(
            "broadcasts/confirmed.html",
            broadcast=created,
            org=org,
            count=count,
            now=context.now,
            seconds=broadcasts.estimate_seconds(count.recipients, _rate(runtime)),
        ),
    )


async def _start(runtime: Runtime, session, broadcast_id: int, now: dt.datetime) -> None:
    """Put the announcement's messages in the outbox (a report at once if nobody is left)."""
    started = await broadcasts.start_broadcast(
        session,
        broadcast_id,
        header=lambda org: _header(runtime, org),
        registry=runtime.features.audiences,
        paid=runtime.config.delivery.paid_broadcast,
        now=now,
    )
    if started is not None and started.finished_at is not None:
        await send_report(runtime, session, started, now)


# --- listing and cancelling -------------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def list_broadcasts(update: Update, context: MoimContext) -> None:
    """/broadcasts [short-name]: recent announcements with their state."""
    slug = command_text(update)
    session = context.session
    if slug:
        org = await resolve_org(update, context, slug, choose_action="bc:org", action="broadcast")
        orgs = [org] if org else []
    else:
        orgs = await organizations.organizer_orgs(
            session, context.member, is_bot_admin=await context.is_admin()
        )
        if not orgs:
            await resolve_org(update, context, None, choose_action="bc:org", action="broadcast")
    await _show_list(update, context, orgs)


async def _show_list(update: Update, context: MoimContext, orgs: list[Organization]) -> None:
    views = await broadcasts.recent_broadcasts(context.session, orgs)
    labels = {
        view.broadcast.id: audience_label(
            context.runtime, context.language, view.broadcast.audience
        )
        for view in views
    }
    context.reply(
        update,
        context.render("broadcasts/list.html", views=views, labels=labels, several=len(orgs) > 1),
    )


@moim_handler(private=True, registered=True)
async def cancel_pressed(update: Update, context: MoimContext) -> None:
    """Cancel a scheduled announcement, or stop one that is going out."""
    parsed = callback(update)
    broadcast_id = parsed.int_arg(0) if parsed else None
    if broadcast_id is None:
        raise StaleButton()
    runtime = context.runtime
    cancelled, held_back = await broadcasts.cancel_broadcast(
        context.session,
        broadcast_id,
        actor=context.member,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    if cancelled.finished_at is not None:
        await send_report(runtime, context.session, cancelled, context.now)
    context.answer(update)
    context.reply(
        update,
        context.render("broadcasts/cancelled.html", broadcast=cancelled, held_back=held_back),
    )


# --- scheduled start and the end --------------------------------------------------------------


async def start_scheduled(job_context: JobContext, job: ScheduledJob) -> None:
    """A scheduled announcement's time has come: its messages go into the outbox."""
    await _start(
        job_context.runtime,
        job_context.session,
        int(job.payload["broadcast_id"]),
        job_context.now,
    )


async def broadcast_finished(job_context: JobContext, batch: str) -> None:
    """Every message of an announcement has its outcome: totals, and the author's report."""
    finished = await broadcasts.finish_broadcast(job_context.session, batch, now=job_context.now)
    if finished is not None:
        await send_report(job_context.runtime, job_context.session, finished, job_context.now)


async def send_report(runtime: Runtime, session, broadcast: Broadcast, now: dt.datetime) -> None:
    """Tell the author how it went (through the outbox, once)."""
    target = await broadcasts.report_for(session, broadcast)
    if target is None:
        return
    author, view = target
    rendered = runtime.renderer.render(
        "broadcasts/report.html",
        author.language,
        view=view,
        audience=audience_label(runtime, author.language, broadcast.audience),
    )
    await outbox.enqueue(
        session,
        chat_id=author.telegram_user_id,
        member_id=author.id,
        payload=outbox.message_payload(rendered.to_payload()),
        now=now,
        batch=f"broadcast-report:{broadcast.id}",
        dedupe_key=f"broadcast:{broadcast.id}:report",
    )


# --- helpers ----------------------------------------------------------------------------------


def _header(runtime: Runtime, org: Organization) -> str:
    """The line naming the organisation above every announcement."""
    return runtime.renderer.text("broadcasts/announcement.html", None, org=org)


def _rate(runtime: Runtime) -> float:
    delivery = runtime.config.delivery
    return (
        delivery.paid_messages_per_second
        if delivery.paid_broadcast
        else delivery.messages_per_second
    )


def audience_label(runtime: Runtime, language: str, audience: dict[str, Any]) -> str:
    """Who an announcement is for, in words ("everyone", "‘Cleanup day’ — waitlisted")."""
    variant = ""
    registered = runtime.features.audiences.get(audience.get("key", ""))
    if audience.get("kind") == "feature" and registered is not None:
        variant = runtime.renderer.text(
            registered.label_template, language, variant=audience.get("variant")
        )
    return runtime.renderer.text(
        "broadcasts/audience.html", language, audience=audience, variant=variant
    )


async def _org(context: MoimContext, state) -> Organization:
    return await organizations.by_id(context.session, int(state.data["org"]))


async def _flow(update: Update, context: MoimContext, *steps: str):
    """The person's announcement being written, at one of ``steps``; else StaleButton."""
    state = await conversations.current(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        now=context.now,
    )
    if state is None or state.flow != FLOW or state.step not in steps:
        raise StaleButton()
    org = await _org(context, state)
    await organizations.require_organizer(
        context.session,
        member=context.member,
        org=org,
        now=context.now,
        action="broadcast",
        is_bot_admin=await context.is_admin(),
    )
    return state, org
