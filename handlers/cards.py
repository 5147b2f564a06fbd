"""/post: put an item's live card (a poll, a campaign, a petition, a meeting) into a group."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.db import transaction
from bot.runtime import CardRequest
from bot.services import cards, organizations
from bot.services.errors import InvalidInput, NotOrganizer, StaleButton
from handlers.common import callback, command_text, is_private, moim_handler


def register(app: MoimApplication) -> None:
    """Add /post and its buttons."""
    app.add_handler(CommandHandler("post", post))
    app.add_handler(CallbackQueryHandler(item_chosen, pattern=pattern("post:item")))
    app.add_handler(CallbackQueryHandler(group_chosen, pattern=pattern("post:to")))
    app.runtime.features.help_templates.append("cards/help.html")


@moim_handler(registered=True)
async def post(update: Update, context: MoimContext) -> None:
    """/post [kind id]: choose an open item, then the group to post its card in."""
    features = context.runtime.features
    words = command_text(update).split()
    if len(words) == 2 and words[0] in features.cards and words[1].isdigit():
        await _item(update, context, words[0], int(words[1]), typed=True)
        return
    if words:
        raise InvalidInput(field="post", reason="usage", kinds=", ".join(features.cards))
    session = context.session
    if is_private(update):
        orgs = await organizations.organizer_orgs(
            session, context.member, is_bot_admin=await context.is_admin()
        )
        if not orgs:
            raise NotOrganizer(org="", action="post")
    else:
        linked = await organizations.linked_chat(session, update.effective_chat.id)
        orgs = [await organizations.by_id(session, linked.organization_id)] if linked else []
        for org in orgs:
            await organizations.require_organizer(
                session,
                member=context.member,
                org=org,
                now=context.now,
                action="post",
                is_bot_admin=await context.is_admin(),
            )
    choices = []
    for kind in features.cards.values():
        for org in orgs:
            for item in await kind.postable(session, org):
                label = context.runtime.renderer.text(
                    kind.label_template, context.language, item=item
                )
                choices.append({"kind": kind.kind, "id": item.id, "label": label})
    context.reply(update, context.render("cards/choose_item.html", choices=choices))


@moim_handler(registered=True)
async def item_chosen(update: Update, context: MoimContext) -> None:
    """An item was chosen for /post."""
    parsed = callback(update)
    item_id = parsed.int_arg(1) if parsed else None
    if item_id is None:
        raise StaleButton()
    context.answer(update)
    await _item(update, context, parsed.str_arg(0), item_id)


async def _item(
    update: Update, context: MoimContext, kind: str, item_id: int, *, typed: bool = False
) -> None:
    """Post the item here (inside a linked group), or ask which group; ``typed``: named in
    the command rather than chosen with a button."""
    org = await _owner_org(context, kind, item_id, typed=typed)
    groups = await organizations.posting_chats(context.session, org)
    if not is_private(update):
        if update.effective_chat.id not in {group.chat_id for group in groups}:
            raise InvalidInput(field="post", reason="not_linked_here")
        await _post(context, kind, item_id, update.effective_chat.id)
        return
    if not groups:
        context.reply(update, context.render("cards/no_group.html", org=org))
    elif len(groups) == 1:
        await _post(context, kind, item_id, groups[0].chat_id)
        context.reply(update, context.render("cards/posted.html", group=groups[0]))
    else:
        context.reply(
            update,
            context.render("cards/choose_group.html", groups=groups, kind=kind, item_id=item_id),
        )


@moim_handler(private=True, registered=True)
async def group_chosen(update: Update, context: MoimContext) -> None:
    """The group was chosen: post the card there."""
    parsed = callback(update)
    item_id = parsed.int_arg(1) if parsed else None
    chat_id = parsed.int_arg(2) if parsed else None
    if item_id is None or chat_id is None:
        raise StaleButton()
    kind = parsed.str_arg(0)
    org = await _owner_org(context, kind, item_id)
    linked = await organizations.posting_chat(context.session, org, chat_id)
    if linked is None:
        raise StaleButton()
    context.answer(update)
    await _post(context, kind, item_id, chat_id)
    context.reply(update, context.render("cards/posted.html", group=linked))


async def _owner_org(context: MoimContext, kind: str, item_id: int, *, typed: bool = False):
    """The organisation of the item, after checking the person organises it."""
    card_kind = context.runtime.features.cards.get(kind)
    organization_id = await card_kind.owner(context.session, item_id) if card_kind else None
    if organization_id is None and typed:
        raise InvalidInput(field="post", reason="no_item", kind=kind, number=item_id)
    if organization_id is None:
        raise StaleButton()
    org = await organizations.by_id(context.session, organization_id)
    await organizations.require_organizer(
        context.session,
        member=context.member,
        org=org,
        now=context.now,
        action="post",
        is_bot_admin=await context.is_admin(),
    )
    return org


async def _post(context: MoimContext, kind: str, item_id: int, chat_id: int) -> None:
    """Send the card to the chat and remember it, so later changes show there."""
    runtime = context.runtime
    language = context.language
    rendered = await runtime.features.cards[kind].render(
        CardRequest(
            session=context.session,
            runtime=runtime,
            item_id=item_id,
            language=language,
            chat_id=chat_id,
            now=context.now,
        )
    )
    if rendered is None:
        raise StaleButton()
    member_id = context.member.id

    async def remember(message) -> None:
        async with transaction(runtime.sessions) as session:
            await cards.remember(
                session,
                kind=kind,
                item_id=item_id,
                chat_id=chat_id,
                message_id=message.message_id,
                language=language,
                posted_by=member_id,
                now=runtime.now(),
            )

    context.send(chat_id, rendered, on_sent=remember)


async def show_card(context: MoimContext, kind: str, item_id: int, chat_id: int) -> None:
    """Send an item's card to a chat (e.g. the private chat after creating it) and keep it live."""
    await _post(context, kind, item_id, chat_id)
