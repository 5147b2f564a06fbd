"""Organisations: create (admins), join by link, invite, members' tiers and roles, groups."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import pattern
from bot.context import MoimApplication, MoimContext
from bot.services import conversations, organizations
from bot.services.errors import InvalidInput, NotOrganizer, NotRegistered, StaleButton
from handlers.common import (
    callback,
    command_text,
    flow_button,
    is_private,
    moim_handler,
    org_from_button,
    resolve_org,
)
from models import OrgKind, Role, Tier

FLOW = "new_org"
MEMBERS_PAGE = 10
KIND_WORDS = {
    "group": OrgKind.GROUP,
    "단체": OrgKind.GROUP,
    "network": OrgKind.NETWORK,
    "연대": OrgKind.NETWORK,
    "연대체": OrgKind.NETWORK,
    "네트워크": OrgKind.NETWORK,
}
SENSITIVE_WORDS = {"sensitive", "민감"}
TIER_CODES = {"f": Tier.FULL, "s": Tier.SUPPORTER}
ROLE_CODES = {"m": Role.MEMBER, "o": Role.ORGANIZER, "a": Role.ADMIN}


def register(app: MoimApplication) -> None:
    """Add the organisations feature's handlers."""
    features = app.runtime.features
    app.add_handler(CommandHandler("new_org", new_org))
    app.add_handler(CallbackQueryHandler(new_org_step, pattern=pattern("neworg")))
    app.add_handler(CallbackQueryHandler(join_pressed, pattern=pattern("org:join")))
    app.add_handler(CallbackQueryHandler(join_declined, pattern=pattern("org:nojoin")))
    app.add_handler(CommandHandler("invite", invite))
    app.add_handler(CallbackQueryHandler(invite_for, pattern=pattern("org:invite")))
    app.add_handler(CommandHandler("members", list_members))
    app.add_handler(CallbackQueryHandler(members_page, pattern=pattern("org:members")))
    app.add_handler(CallbackQueryHandler(member_detail, pattern=pattern("org:member")))
    app.add_handler(CallbackQueryHandler(member_change, pattern=pattern("org:set")))
    app.add_handler(CommandHandler("link_group", link_group))
    app.add_handler(CallbackQueryHandler(link_group_for, pattern=pattern("org:link")))
    app.add_handler(CommandHandler("network_add", network_add))
    features.deep_links["org"] = open_org_link
    features.flows[FLOW] = new_org_text
    features.help_templates.append("orgs/help.html")


# --- creating an organisation ------------------------------------------------------------------


@moim_handler(private=True, registered=True, admin=True)
async def new_org(update: Update, context: MoimContext) -> None:
    """/new_org: guided creation; ``/new_org NAME | slug | network | sensitive`` at once."""
    text = command_text(update)
    if text:
        name, slug, kind, sensitive = await _parse_one_line(context, text)
        org = await organizations.create_organization(
            context.session,
            creator=context.member,
            name=name,
            slug=slug,
            kind=kind,
            sensitive=sensitive,
            timezone=context.runtime.config.bot.timezone,
            now=context.now,
        )
        context.reply(update, context.render("orgs/created.html", org=org))
        return
    await conversations.begin(
        context.session,
        chat_id=update.effective_chat.id,
        user_id=update.effective_user.id,
        flow=FLOW,
        step="name",
        now=context.now,
    )
    context.reply(update, context.render("orgs/ask_name.html"))


async def _parse_one_line(context: MoimContext, text: str):
    parts = [part.strip() for part in text.split("|")]
    name, options = parts[0], [p for p in parts[1:] if p]
    slug, kind, sensitive = None, OrgKind.GROUP, False
    for option in options:
        word = option.lower()
        if word in KIND_WORDS:
            kind = KIND_WORDS[word]
        elif word in SENSITIVE_WORDS:
            sensitive = True
        elif organizations.SLUG_PATTERN.match(word):
            slug = word
        else:
            raise InvalidInput(field="new_org_option", value=option)
    slug = slug or await organizations.next_free_slug(context.session, name)
    return name, slug, kind, sensitive


@moim_handler(private=True, registered=True, admin=True)
async def new_org_text(update: Update, context: MoimContext, state) -> None:
    """A typed answer inside the /new_org flow: the name, or a slug of one's own."""
    text = update.effective_message.text.strip()
    if state.step == "name":
        name = " ".join(text.split())
        if not name or len(name) > organizations.MAX_ORG_NAME:
            raise InvalidInput(
                field="org_name",
                reason="too_long" if name else "empty",
                limit=organizations.MAX_ORG_NAME,
            )
        await conversations.advance(
            context.session, state, step="kind", now=context.now, name=name
        )
        context.reply(update, context.render("orgs/ask_kind.html", name=name))
    elif state.step == "slug":
        slug = organizations.validate_slug(text)
        await conversations.advance(
            context.session, state, step="preview", now=context.now, slug=slug
        )
        context.reply(update, context.render("orgs/preview.html", draft=state.data))
    else:
        context.reply(update, context.render("orgs/use_buttons.html"))


@moim_handler(private=True, registered=True, admin=True)
async def new_org_step(update: Update, context: MoimContext) -> None:
    """A button inside the /new_org flow: kind, sensitivity, slug, create or cancel."""
    parsed, state = await flow_button(update, context, FLOW)
    chat_id, user_id = update.effective_chat.id, update.effective_user.id
    verb, value = parsed.verb, parsed.str_arg(0)
    session, now = context.session, context.now
    context.answer(update)
    if verb == "kind" and state.step == "kind" and value in ("group", "network"):
        await conversations.advance(session, state, step="sensitive", now=now, kind=value)
        context.reply(update, context.render("orgs/ask_sensitive.html"))
    elif verb == "sens" and state.step == "sensitive" and value in ("0", "1"):
        suggestion = await organizations.next_free_slug(session, state.data["name"])
        await conversations.advance(
            session, state, step="slug", now=now, sensitive=value == "1", suggestion=suggestion
        )
        context.reply(update, context.render("orgs/ask_slug.html", suggestion=suggestion))
    elif verb == "slug" and state.step == "slug":
        await conversations.advance(
            session, state, step="preview", now=now, slug=state.data["suggestion"]
        )
        context.reply(update, context.render("orgs/preview.html", draft=state.data))
    elif verb == "create" and state.step == "preview":
        draft = state.data
        org = await organizations.create_organization(
            session,
            creator=context.member,
            name=draft["name"],
            slug=draft["slug"],
            kind=OrgKind(draft["kind"]),
            sensitive=draft["sensitive"],
            timezone=context.runtime.config.bot.timezone,
            now=now,
        )
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.reply(update, context.render("orgs/created.html", org=org))
    elif verb == "cancel":
        await conversations.finish(session, chat_id=chat_id, user_id=user_id)
        context.reply(update, context.render("common/cancelled.html", ended=True))
    else:
        raise StaleButton()


# --- joining ----------------------------------------------------------------------------------


async def open_org_link(update: Update, context: MoimContext, slug: str) -> None:
    """Deep link org_<slug>: offer to join (with the separate consent for sensitive ones)."""
    org = await organizations.by_slug(context.session, slug)
    membership = await organizations.membership_of(context.session, context.member, org)
    context.reply(update, context.render("orgs/join_card.html", org=org, membership=membership))


@moim_handler(private=True)
async def join_pressed(update: Update, context: MoimContext) -> None:
    """Join button: become a supporter of the organisation."""
    parsed = callback(update)
    organization_id = parsed.int_arg(0) if parsed else None
    if organization_id is None:
        raise StaleButton()
    if context.member is None:
        raise NotRegistered()
    org = await organizations.by_id(context.session, organization_id)
    membership, new = await organizations.join(
        context.session,
        member=context.member,
        org=org,
        sensitive_consent=parsed.str_arg(1) == "s",
        now=context.now,
    )
    context.replace(
        update, context.render("orgs/joined.html", org=org, membership=membership, new=new)
    )


@moim_handler(private=True)
async def join_declined(update: Update, context: MoimContext) -> None:
    """Not joining after all."""
    context.replace(update, context.render("orgs/not_joined.html"))


# --- inviting ---------------------------------------------------------------------------------


@moim_handler(registered=True)
async def invite(update: Update, context: MoimContext) -> None:
    """/invite [slug]: the organisation's join link, ready to share anywhere."""
    org = await resolve_org(
        update,
        context,
        command_text(update) or None,
        choose_action="org:invite",
        action="invite",
    )
    if org is not None:
        context.reply(update, context.render("orgs/invite.html", org=org))


@moim_handler(registered=True)
async def invite_for(update: Update, context: MoimContext) -> None:
    """The organisation chosen for /invite."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="invite"
    )
    context.answer(update)
    context.reply(update, context.render("orgs/invite.html", org=org))


# --- members, tiers and roles -----------------------------------------------------------------


@moim_handler(private=True, registered=True)
async def list_members(update: Update, context: MoimContext) -> None:
    """/members [slug]: the member list with buttons to open each person."""
    org = await resolve_org(
        update,
        context,
        command_text(update) or None,
        choose_action="org:members",
        action="members.list",
    )
    if org is not None:
        context.reply(update, await _members_page(context, org, 0))


async def _members_page(context: MoimContext, org, offset: int):
    rows, total = await organizations.list_members(
        context.session, org, offset=offset, limit=MEMBERS_PAGE
    )
    return context.render(
        "orgs/members.html",
        org=org,
        rows=rows,
        total=total,
        offset=offset,
        page_size=MEMBERS_PAGE,
    )


@moim_handler(private=True, registered=True)
async def members_page(update: Update, context: MoimContext) -> None:
    """Paging through the member list (or the organisation chosen for /members)."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="members.list"
    )
    page = await _members_page(context, org, max(0, parsed.int_arg(1) or 0))
    if parsed.int_arg(1) is None:  # chosen from the organisation list: a new message
        context.answer(update)
        context.reply(update, page)
    else:
        context.replace(update, page)


@moim_handler(private=True, registered=True)
async def member_detail(update: Update, context: MoimContext) -> None:
    """One member with buttons to change tier and role."""
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="members.list"
    )
    row = await organizations.get_membership(context.session, org, parsed.int_arg(1) or 0)
    if row is None:
        raise StaleButton()
    context.replace(update, await _detail(context, org, row))


async def _detail(context: MoimContext, org, row):
    actor = await organizations.membership_of(context.session, context.member, org)
    actor_is_admin = await context.is_admin() or (actor is not None and actor.role == Role.ADMIN)
    return context.render(
        "orgs/member_detail.html", org=org, row=row, actor_is_admin=actor_is_admin
    )


@moim_handler(private=True, registered=True)
async def member_change(update: Update, context: MoimContext) -> None:
    """Change a member's tier (f/s) or role (m/o/a)."""
    parsed = callback(update)
    if parsed is None or parsed.str_arg(2) not in ("t", "r"):
        raise StaleButton()
    org = await org_from_button(update, context, parsed.int_arg(0), action="members.change")
    field, code = parsed.str_arg(2), parsed.str_arg(3)
    tier = TIER_CODES.get(code) if field == "t" else None
    role = ROLE_CODES.get(code) if field == "r" else None
    if tier is None and role is None:
        raise StaleButton()
    row = await organizations.change_membership(
        context.session,
        actor=context.member,
        org=org,
        membership_id=parsed.int_arg(1) or 0,
        role=role,
        tier=tier,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    notice = context.render("orgs/changed_notice.html", row=row).text
    context.replace(update, await _detail(context, org, row), notice=notice)


# --- Telegram groups and networks -------------------------------------------------------------


@moim_handler(registered=True)
async def link_group(update: Update, context: MoimContext) -> None:
    """/link_group [slug] inside a group: attach this group to the organisation."""
    if is_private(update):
        context.reply(update, context.render("orgs/link_group_in_group.html"))
        return
    slug = command_text(update)
    if slug:
        org = await organizations.by_slug(context.session, slug)
    else:
        choices = await organizations.organizer_orgs(
            context.session, context.member, is_bot_admin=await context.is_admin()
        )
        if len(choices) != 1:
            if not choices:
                raise NotOrganizer(org="", action="link_group")
            context.reply(
                update, context.render("common/choose_org.html", orgs=choices, action="org:link")
            )
            return
        org = choices[0]
    await _link(update, context, org)


async def _link(update: Update, context: MoimContext, org) -> None:
    chat = update.effective_chat
    await organizations.link_chat(
        context.session,
        actor=context.member,
        org=org,
        chat_id=chat.id,
        title=chat.title or "",
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    context.reply(update, context.render("orgs/linked.html", org=org))


@moim_handler(registered=True)
async def link_group_for(update: Update, context: MoimContext) -> None:
    """The organisation chosen for /link_group (checked again: anyone can press)."""
    if is_private(update):
        raise StaleButton()
    parsed = callback(update)
    org = await org_from_button(
        update, context, parsed.int_arg(0) if parsed else None, action="link_group"
    )
    context.answer(update)
    await _link(update, context, org)


@moim_handler(private=True, registered=True)
async def network_add(update: Update, context: MoimContext) -> None:
    """/network_add NETWORK GROUP: make a group part of a network (연대)."""
    words = command_text(update).split()
    if len(words) != 2:
        raise InvalidInput(field="network_add", reason="usage")
    network = await organizations.by_slug(context.session, words[0])
    group = await organizations.by_slug(context.session, words[1])
    added = await organizations.add_to_network(
        context.session,
        actor=context.member,
        network=network,
        group=group,
        is_bot_admin=await context.is_admin(),
        now=context.now,
    )
    context.reply(
        update,
        context.render("orgs/network_added.html", network=network, group=group, added=added),
    )
