"""Who may do what: every organiser and admin action, tried by people who may not.

One world per database backend (built once for the module): 새솔마을 주민회 (org A) with its
admin 민지, its organiser 하은 and a plain member 서준, its group chat, a poll, a meeting, a
campaign, a petition and a scheduled announcement, all made through the bot's own commands;
지호, who organises two other organisations (북촌); Alex, who registered (in English) and
joined nothing; and 손님, who never registered.

The table tries each action as each person who may not do it, over the real bot, and checks:
a friendly refusal in the person's language; nothing changed in the database; the refusal in
the audit log with who tried and what. Positive controls (run last, they change the world)
show that the rightful organiser can do each family of actions through the same harness.
A completeness check fails when a command or button is added without being classified here.

What the "nothing changed" snapshot leaves out: the audit log (checked on its own) and the
processed update ids (every update adds one, by design). Conversation states stay in: a
refusal rolls back the whole update, so even an open flow must survive it untouched.

People who never registered are asked to register and nothing is stored about them, not even
an audit entry: they have no member id, and keeping their Telegram id would keep personal data
of someone who never consented.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel, select
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot.callbacks import ButtonPattern
from bot.clock import UTC, FakeClock
from bot.config import Config
from bot.db import transaction
from bot.local import LocalOptions, LocalTelegram
from bot.services import members
from models import (
    AuditLog,
    Broadcast,
    Campaign,
    CampaignStatus,
    LinkedChat,
    Meeting,
    MeetingOccurrence,
    Membership,
    OrgKind,
    Petition,
    Poll,
    PollStatus,
    ProcessedUpdate,
    Role,
    Tier,
)
from tests.conftest import BACKENDS, POSTGRES_URL, fast_chat_limits
from tests.e2e import Person, register
from tests.factories import add_member, make_org

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Who tries. "organiser" (하은, organiser but not admin of org A) only tries admin actions.
MEMBER, OUTSIDER, STRANGER, UNREGISTERED, ORGANISER = (
    "member",
    "outsider",
    "stranger",
    "unregistered",
    "organiser",
)
EVERYONE_ELSE = (MEMBER, OUTSIDER, STRANGER, UNREGISTERED)
# For commands that can only name the person's own organisation: the outsider would act in
# their own (that is allowed); their attempt on org A is a separate row naming it.
NO_ORGANISATION = (MEMBER, STRANGER, UNREGISTERED)

REFUSED = {
    "ko": ("아무것도 바뀌지 않았습니다", "이 투표 결과는 단체 회원만 볼 수 있습니다"),
    "en": ("Nothing was changed", "The results of this poll are for its organisation's members"),
}
REGISTER_FIRST = "먼저 가입해 주세요"
APOLOGY = "아무것도 저장하지 않았습니다"  # the unexpected-error message: never a refusal


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Something a person does: say a text or press (forged) callback data, here or in the
    group. ``{name}`` in it is filled from the world's ids."""

    kind: str  # "say" or "press"
    text: str
    in_group: bool = False

    def filled(self, ids: dict[str, Any]) -> str:
        """The text or data with the world's ids in it."""
        return self.text.format(**ids)


def say(text: str, *, in_group: bool = False) -> Step:
    """Send ``text`` in the private chat (or the group)."""
    return Step("say", text, in_group)


def press(data: str, *, in_group: bool = False) -> Step:
    """Press a button carrying ``v1:<data>``, whether or not the bot ever showed it."""
    return Step("press", "v1:" + data, in_group)


@dataclass(frozen=True)
class Action:
    """One organiser or admin action, the audit action its refusal is logged under, and who
    tries it; ``prelude`` puts the person where the action makes sense (not checked)."""

    name: str
    step: Step
    audit: str
    actors: tuple[str, ...] = EVERYONE_ELSE
    prelude: tuple[Step, ...] = ()


ACTIONS = [
    # Organisations, members, groups, networks
    Action(
        "new_org",
        say("/new_org 가짜 단체 | fake-org"),
        "/new_org",
        (*EVERYONE_ELSE, ORGANISER),
    ),
    Action(
        "new_org_button",
        press("neworg:create"),
        "button:neworg:create",
        (*EVERYONE_ELSE, ORGANISER),
    ),
    Action("invite", say("/invite saesol"), "invite"),
    Action("invite_button", press("org:invite:{org_a}"), "invite"),
    Action("members", say("/members saesol"), "members.list"),
    Action("members_page", press("org:members:{org_a}:0"), "members.list"),
    Action("member_detail", press("org:member:{org_a}:{seojun_membership}"), "members.list"),
    Action("set_tier", press("org:set:{org_a}:{seojun_membership}:t:f"), "members.change"),
    Action("make_organiser", press("org:set:{org_a}:{seojun_membership}:r:o"), "members.change"),
    Action(
        "make_admin",
        press("org:set:{org_a}:{seojun_membership}:r:a"),
        "members.role.admin",
        (ORGANISER,),
    ),
    Action(
        "demote_admin",
        press("org:set:{org_a}:{minji_membership}:r:m"),
        "members.role.admin",
        (ORGANISER,),
    ),
    Action("link_group", say("/link_group saesol", in_group=True), "link_group"),
    Action(
        "link_group_to_own_org",
        say("/link_group bukchon", in_group=True),
        "link_group",
        (OUTSIDER,),
    ),
    Action("link_group_button", press("org:link:{org_a}", in_group=True), "link_group"),
    Action(
        "link_group_button_to_own_org",
        press("org:link:{org_b}", in_group=True),
        "link_group",
        (OUTSIDER,),
    ),
    Action(
        "network_add",
        say("/network_add seoul-net saesol"),
        "network.add",
        (*EVERYONE_ELSE, ORGANISER),
    ),
    # Polls
    Action("new_poll", say("/new_poll 몰래 만든 투표 | 가 | 나"), "poll.create", NO_ORGANISATION),
    Action(
        "new_poll_for_org_a",
        press("newpoll:org:{org_a}"),
        "poll.create",
        (OUTSIDER,),
        prelude=(say("/new_poll"),),
    ),
    Action("polls", say("/polls saesol"), "poll.list"),
    Action("polls_button", press("poll:list:{org_a}"), "poll.list"),
    Action("close_poll", say("/close_poll {poll}"), "poll.close"),
    Action("close_poll_button", press("poll:close:{poll}"), "poll.close"),
    Action("close_poll_in_group", press("poll:close:{poll}", in_group=True), "poll.close"),
    Action("close_poll_confirm", press("poll:closeok:{poll}"), "poll.close"),
    Action("delete_poll", press("poll:del:{poll}"), "poll.delete"),
    Action("delete_poll_confirm", press("poll:delok:{poll}"), "poll.delete"),
    Action("export_poll_results", press("poll:exp:{poll}:r:csv"), "poll.export"),
    Action("export_poll_ballots", press("poll:exp:{poll}:b:xlsx"), "poll.export"),
    # A members-only poll's results: its members (서준) may see them, outsiders may not.
    Action("results", say("/results {poll}"), "poll.results", (OUTSIDER, STRANGER, UNREGISTERED)),
    Action(
        "results_button",
        press("poll:res:{poll}"),
        "poll.results",
        (OUTSIDER, STRANGER, UNREGISTERED),
    ),
    # Meetings
    Action(
        "new_meeting",
        say("/new_meeting 몰래 회의 | 12월 20일 19:00"),
        "meeting.create",
        NO_ORGANISATION,
    ),
    Action(
        "new_meeting_for_org_a",
        press("newmtg:org:{org_a}"),
        "meeting.create",
        (OUTSIDER,),
        prelude=(say("/new_meeting"),),
    ),
    Action("manage_meeting", press("mtg:manage:{meeting}"), "meeting.manage"),
    Action("move_date", press("mtg:move:o:{occurrence}"), "meeting.move"),
    Action("move_series", press("mtg:move:s:{meeting}"), "meeting.move"),
    Action("cancel_date", press("mtg:cancel:o:{occurrence}"), "meeting.cancel"),
    Action("cancel_date_confirm", press("mtg:cancel:o:{occurrence}:ok"), "meeting.cancel"),
    Action("cancel_series_confirm", press("mtg:cancel:s:{meeting}:ok"), "meeting.cancel"),
    Action("reminders", press("mtg:remind:{meeting}"), "meeting.remind"),
    Action("reminder_toggle", press("mtg:rem:{meeting}:60"), "meeting.remind"),
    Action("reminder_audience", press("mtg:aud:{meeting}:e"), "meeting.remind"),
    Action("open_checkin", press("mtg:checkin:{occurrence}"), "meeting.checkin"),
    Action("close_checkin", press("mtg:close:{occurrence}"), "meeting.checkin"),
    Action("minutes", press("mtg:minutes:{occurrence}"), "meeting.minutes"),
    Action("export_attendance", press("mtg:export:{meeting}:csv"), "meeting.export"),
    # Campaigns
    Action(
        "new_campaign",
        say("/new_campaign 몰래 행사 | 12월 20일 19:00"),
        "campaign.create",
        NO_ORGANISATION,
    ),
    Action(
        "new_campaign_naming_org_a",
        say("/new_campaign 몰래 행사 | 12월 20일 19:00 | 단체 saesol"),
        "campaign.create",
        (OUTSIDER,),
    ),
    Action("new_campaign_for_org_a", press("camp:neworg:{org_a}"), "campaign.create"),
    Action("campaigns", say("/campaigns saesol"), "campaign.list"),
    Action("campaigns_button", press("camp:list:{org_a}"), "campaign.list"),
    Action("edit_campaign", say("/edit_campaign {campaign} | 정원 99"), "campaign.edit"),
    Action("manage_campaign", press("camp:manage:{campaign}"), "campaign.view"),
    Action("open_campaign", press("camp:open:{campaign}"), "campaign.open"),
    Action("close_campaign", press("camp:close:{campaign}"), "campaign.view"),
    Action("close_campaign_confirm", press("camp:closeok:{campaign}"), "campaign.close"),
    Action("signups", say("/signups {campaign}"), "campaign.view"),
    Action("signups_button", press("camp:signups:{campaign}"), "campaign.view"),
    Action("export_signups", press("camp:export:{campaign}:csv"), "campaign.export"),
    Action("export_survey", press("camp:sexport:{campaign}:xlsx"), "campaign.survey"),
    Action("message_signups", press("camp:notice:{campaign}"), "campaign.notice"),
    Action("survey_results", press("camp:survey:{campaign}"), "campaign.survey"),
    # Petitions
    Action(
        "new_petition",
        say("/new_petition 몰래 청원 | 구청장 | 10\n본문입니다."),
        "petition.create",
        NO_ORGANISATION,
    ),
    Action(
        "new_petition_naming_org_a",
        say("/new_petition 몰래 청원 | 구청장 | 10 | saesol\n본문입니다."),
        "petition.create",
        (OUTSIDER,),
    ),
    Action(
        "new_petition_for_org_a",
        press("petnew:org:{org_a}"),
        "petition.create",
        (OUTSIDER,),
        prelude=(say("/new_petition"),),
    ),
    Action("petition_list", say("/signatures"), "petition.list", NO_ORGANISATION),
    Action("signatures", say("/signatures {petition}"), "petition.signatures"),
    Action("signatures_button", press("pet:sum:{petition}"), "petition.signatures"),
    Action("export_signatures", press("pet:exp:{petition}:csv"), "petition.export"),
    Action("printable_signatures", press("pet:exp:{petition}:html"), "petition.export"),
    Action("close_petition", say("/close_petition {petition}"), "petition.close"),
    Action("close_petition_button", press("pet:close:{petition}"), "petition.close"),
    Action("close_petition_confirm", press("pet:closeyes:{petition}"), "petition.close"),
    Action("petition_news", press("pet:notify:{petition}:1"), "petition.notify"),
    # Announcements
    Action("broadcast", say("/broadcast saesol"), "broadcast"),
    Action("broadcast_own_org", say("/broadcast"), "broadcast", NO_ORGANISATION),
    Action("broadcast_button", press("bc:org:{org_a}"), "broadcast"),
    Action("broadcasts", say("/broadcasts saesol"), "broadcast"),
    Action("broadcasts_own_org", say("/broadcasts"), "broadcast", NO_ORGANISATION),
    Action("cancel_broadcast", press("bc:cancel:{broadcast}"), "broadcast.cancel"),
    # Posting cards into the group
    Action("post", say("/post"), "post", NO_ORGANISATION),
    Action("post_in_group", say("/post", in_group=True), "post"),
    Action("post_poll", say("/post poll {poll}"), "post"),
    Action("post_poll_in_group", say("/post poll {poll}", in_group=True), "post"),
    Action("post_meeting", say("/post meeting {meeting}"), "post"),
    Action("post_campaign", say("/post campaign {campaign}"), "post"),
    Action("post_petition", say("/post petition {petition}"), "post"),
    Action("post_item_button", press("post:item:poll:{poll}"), "post"),
    Action("post_to_group_button", press("post:to:poll:{poll}:{group}"), "post"),
]

# Commands and buttons anyone registered may use (their own data, or a citizen's part).
OPEN_TO_ALL = {
    "commands": {
        "start": "registration",
        "me": "own profile",
        "lang": "own language",
        "name": "own name",
        "mute": "own notifications",
        "unmute": "own notifications",
        "mydata": "own data export",
        "forget": "own data deletion",
        "help": "help (organiser lines only for organisers)",
        "cancel": "ends one's own flow",
        "verify": "a secret ballot's receipt, by whoever holds it",
        "meetings": "one's own meetings",
        "calendar": "one's own calendar",
        "checkin": "a member checks in with the code read out in the room",
        "campaign": "organisers get the overview, everyone else the public card",
    },
    "buttons": {
        "reg:agree": "registration",
        "reg:decline": "registration",
        "reg:lang": "registration",
        "reg:age": "registration",
        "me:lang": "own language",
        "me:forget": "own data deletion",
        "org:join": "joining by link",
        "org:nojoin": "joining by link",
        "poll:vote": "voting",
        "poll:panel": "voting",
        "poll:mc": "voting",
        "poll:mcv": "voting",
        "poll:rk": "voting",
        "poll:rkv": "voting",
        "poll:why": "a voter's reason",
        "poll:show": "the card (organiser buttons only for organisers)",
        "mtg:rsvp": "answering",
        "mtg:ics": "calendar file",
        "mtg:cal": "calendar link",
        "mtg:open": "the card",
        "mtg:here": "checking in",
        "camp:join": "signing up",
        "camp:cancel": "own sign-up",
        "camp:cancelok": "own sign-up",
        "camp:keep": "own sign-up",
        "camp:answer": "own answers",
        "camp:ans": "own answers",
        "camp:rate": "the survey",
        "camp:nocomment": "the survey",
        "pet:sign": "signing",
        "pet:unsign": "own signature",
        "pet:text": "the full text",
        "pet:name": "own signature",
        "pet:cmt": "own comment",
    },
}
# Steps inside a flow that only exists once its start was allowed; each step acts on the
# flow's own organisation and the services check the organiser again before writing.
FLOW_STEPS = {
    "camp:new": "new campaign steps",
    "camp:send": "message to sign-ups (after camp:notice)",
    "bc:aud": "announcement audience (re-checked in the flow)",
    "bc:feat": "announcement audience",
    "bc:item": "announcement audience",
    "bc:var": "announcement audience",
    "bc:do": "announcement preview",
    "mtg:minsend": "minutes (after mtg:minutes)",
}


def _cases() -> list[Any]:
    """(action, actor) for every row of the table."""
    return [
        pytest.param(action, actor, id=f"{action.name}-{actor}")
        for action in ACTIONS
        for actor in action.actors
    ]


# --- the world -----------------------------------------------------------------------------


@dataclass
class World:
    """The running bot, its people by role, and the ids the table refers to."""

    local: LocalTelegram
    people: dict[str, Person]
    member_ids: dict[str, int]
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self):
        """The bot's runtime."""
        return self.local.runtime


def _config(backend: str, directory: Path) -> tuple[Config, str]:
    """Configuration for a fresh database of ``backend``, and its PostgreSQL schema if any."""
    if backend == "sqlite":
        database = {"url": f"sqlite+aiosqlite:///{directory / 'moim.sqlite3'}", "schema": ""}
    else:
        database = {"url": POSTGRES_URL, "schema": "t_authz_" + secrets.token_hex(5)}
    delivery, _ = fast_chat_limits()
    config = Config().replace(
        database=database,
        bot={"admins": [], "operator_name": "새솔마을 주민회"},
        delivery=delivery,
        base_dir=directory,
    )
    return config, database["schema"]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def world(request, tmp_path_factory) -> AsyncIterator[World]:
    """The world of the module docstring, built once per backend."""
    config, schema = _config(request.param, tmp_path_factory.mktemp("authz"))
    clock = FakeClock(dt.datetime(2026, 12, 1, 0, 0, tzinfo=UTC))  # Tue 09:00 in Seoul
    _, limits = fast_chat_limits()
    local = LocalTelegram(
        config, LocalOptions(clock=clock, run_scheduler=False, poll_timeout=1, limits=limits)
    )
    await local.start()
    try:
        yield await _build(local)
    finally:
        await local.stop()
        if schema:
            engine = create_async_engine(POSTGRES_URL)
            async with engine.begin() as connection:
                await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()


async def _build(local: LocalTelegram) -> World:
    """People and organisations through the services; items through the bot's commands."""
    runtime = local.runtime
    people = {
        "bot_admin": Person(local, "운영자"),
        "admin": Person(local, "민지"),
        ORGANISER: Person(local, "하은"),
        MEMBER: Person(local, "서준"),
        OUTSIDER: Person(local, "지호"),
        STRANGER: Person(local, "Alex", language="en"),
        UNREGISTERED: Person(local, "손님"),
    }
    runtime.config = runtime.config.replace(bot={"admins": [people["bot_admin"].id]})
    for role, person in people.items():
        if role != UNREGISTERED:
            await register(person)
    await people[UNREGISTERED].say("안녕하세요")  # talks to the bot, never registers
    now = runtime.now()
    async with transaction(runtime.sessions) as session:
        member = {
            role: await members.by_telegram_id(session, person.id)
            for role, person in people.items()
            if role != UNREGISTERED
        }
        org_a = await make_org(session, member["admin"], now=now)
        await add_member(
            session, org_a, member[ORGANISER], role=Role.ORGANIZER, tier=Tier.FULL, now=now
        )
        await add_member(session, org_a, member[MEMBER], now=now)
        org_b = await make_org(
            session, member[OUTSIDER], name="북촌 주민회", slug="bukchon", now=now
        )
        # A second one: the outsider's creation flows then ask which organisation, and the
        # table answers with org A.
        await make_org(
            session, member[OUTSIDER], name="북촌 청년회", slug="bukchon-youth", now=now
        )
        await make_org(
            session,
            member["bot_admin"],
            name="서울 마을 연대",
            slug="seoul-net",
            kind=OrgKind.NETWORK,
            now=now,
        )
        member_ids = {role: m.id for role, m in member.items()}
        org_a_id, org_b_id = org_a.id, org_b.id
    world = World(local=local, people=people, member_ids=member_ids)

    emulator = local.emulator
    group = emulator.create_group("새솔 단톡방")
    for person in people.values():
        emulator.add_member(group["id"], person.id, announce=False)
    emulator.add_bot_to_group(local.token, group["id"], by_user_id=people["admin"].id)
    await local.settle()
    minji = people["admin"]
    await minji.say("/link_group saesol", chat_id=group["id"])
    await minji.say("/new_poll 회원 투표: 마을 축제 날짜 | 토요일 | 일요일 | 자격: 회원")
    await minji.say("/new_meeting 정기총회 | 12월 19일 19:30 | 2시간 | 구민회관")
    await minji.say("/new_campaign 12월 정기 상영회 | 12월 19일 19:00 | 마을회관 | 정원 2")
    await minji.tap("지금 신청 받기")
    await minji.say("/new_petition 마을버스 증차 요청 | 구청장 | 100\n배차 간격을 줄여 주세요.")
    await minji.say("/broadcast")
    await minji.say("12월 총회 안내입니다")
    await minji.tap("모두")
    await minji.tap("시간 예약하기")
    await minji.say("12월 2일 18:00")
    await minji.tap("18:00에 보내기")

    async with transaction(runtime.sessions) as session:

        async def one(statement) -> Any:
            return (await session.exec(statement)).one()

        meeting_id = await one(select(Meeting.id))
        world.ids = {
            "org_a": org_a_id,
            "org_b": org_b_id,
            "group": group["id"],
            "poll": await one(select(Poll.id)),
            "meeting": meeting_id,
            "occurrence": (
                await session.exec(
                    select(MeetingOccurrence.id)
                    .where(MeetingOccurrence.meeting_id == meeting_id)
                    .order_by(MeetingOccurrence.starts_at)
                )
            ).first(),
            "campaign": await one(select(Campaign.id)),
            "petition": await one(select(Petition.id)),
            "broadcast": await one(select(Broadcast.id)),
            "seojun_membership": await one(
                select(Membership.id).where(
                    Membership.member_id == member_ids[MEMBER],
                    Membership.organization_id == org_a_id,
                )
            ),
            "minji_membership": await one(
                select(Membership.id).where(
                    Membership.member_id == member_ids["admin"],
                    Membership.organization_id == org_a_id,
                )
            ),
        }
        linked = await one(select(LinkedChat.organization_id))
    assert linked == org_a_id, "the group chat should be linked to org A"
    return world


# --- doing something and what it changed ---------------------------------------------------


SKIPPED_TABLES = {AuditLog.__tablename__, ProcessedUpdate.__tablename__}


async def snapshot(world: World) -> dict[str, list[tuple]]:
    """Every row of every table but the audit log and the processed update ids."""
    tables = {}
    async with world.runtime.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in SKIPPED_TABLES:
                continue
            rows = await connection.execute(sa.select(table).order_by(*table.primary_key.columns))
            tables[table.name] = [tuple(row) for row in rows]
    return tables


def changed_tables(before: dict, after: dict) -> list[str]:
    """The tables whose rows differ between two snapshots."""
    return [name for name in before if before[name] != after[name]]


async def last_audit_id(world: World) -> int:
    """The newest audit entry's id (0 for none)."""
    async with world.runtime.engine.connect() as connection:
        return (await connection.execute(sa.select(sa.func.max(AuditLog.id)))).scalar() or 0


async def audit_since(world: World, mark: int) -> list[AuditLog]:
    """Audit entries written after ``mark``, oldest first."""
    async with transaction(world.runtime.sessions) as session:
        result = await session.exec(
            select(AuditLog).where(AuditLog.id > mark).order_by(AuditLog.id)
        )
        return list(result.all())


@dataclass
class Outcome:
    """What the person saw, what changed in the database, and what the audit log got."""

    texts: list[str]
    url: str | None
    changed: list[str]
    audit: list[AuditLog]

    @property
    def seen(self) -> str:
        """Everything shown, as one text."""
        return "\n".join(self.texts)


async def perform(world: World, person: Person, step: Step) -> tuple[list[str], str | None]:
    """Do ``step`` as ``person``; the texts they were shown, and the link a button opened."""
    chat = world.ids["group"] if step.in_group else person.id
    text = step.filled(world.ids)
    if step.kind == "say":
        messages = await person.say(text, chat_id=chat)
        return [m["text"] or m.get("caption") or "" for m in messages], None
    answer = await person.press(person.last(chat), text, forge=True)
    shown = [answer.get("text") or ""] + [m["text"] or "" for m in answer["messages"]]
    return shown, answer.get("url")


async def attempt(world: World, actor: str, step: Step, prelude: tuple[Step, ...] = ()) -> Outcome:
    """``step`` as ``actor`` (after the prelude), with what it changed and logged."""
    person = world.people[actor]
    for before_step in prelude:
        await perform(world, person, before_step)
    before, mark = await snapshot(world), await last_audit_id(world)
    texts, url = await perform(world, person, step)
    after = await snapshot(world)
    return Outcome(texts, url, changed_tables(before, after), await audit_since(world, mark))


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "actor"), _cases())
async def test_refused_unchanged_and_audited(world: World, action: Action, actor: str):
    outcome = await attempt(world, actor, action.step, action.prelude)
    assert not outcome.changed, f"{action.name} as {actor} changed {outcome.changed}"
    assert APOLOGY not in outcome.seen and "Traceback" not in outcome.seen
    if actor == UNREGISTERED:
        asked = REGISTER_FIRST in outcome.seen or "start=" in (outcome.url or "")
        assert asked, f"{action.name}: not asked to register: {outcome.texts}"
        assert outcome.audit == []
        return
    language = "en" if actor == STRANGER else "ko"
    assert any(phrase in outcome.seen for phrase in REFUSED[language]), (
        f"{action.name} as {actor}: no refusal in {language}: {outcome.texts}"
    )
    recorded = [(entry.actor_member_id, entry.action, entry.outcome) for entry in outcome.audit]
    assert recorded == [(world.member_ids[actor], action.audit, "refused")], recorded


def _registered_actions(world: World) -> tuple[set[str], list[ButtonPattern]]:
    """Every command and every button pattern the running bot has a handler for."""
    commands: set[str] = set()
    patterns: list[ButtonPattern] = []
    for handlers in world.local.application.handlers.values():
        for handler in handlers:
            if isinstance(handler, CommandHandler):
                commands |= set(handler.commands)
            elif isinstance(handler, CallbackQueryHandler) and handler.pattern is not None:
                patterns.append(handler.pattern)
    return commands, patterns


def _button_action(pattern: ButtonPattern) -> str:
    """``org:set`` for the pattern of ``v1:org:set``."""
    return pattern.action


async def test_every_command_and_button_is_classified(world: World):
    commands, patterns = _registered_actions(world)
    tried_commands = {
        a.step.text.split()[0].removeprefix("/") for a in ACTIONS if a.step.kind == "say"
    }
    unclassified = commands - tried_commands - set(OPEN_TO_ALL["commands"])
    assert not unclassified, f"commands missing from the authorization table: {unclassified}"
    tried_buttons = [a.step.filled(world.ids) for a in ACTIONS if a.step.kind == "press"]
    missing = [
        _button_action(p)
        for p in patterns
        if not any(p(data) for data in tried_buttons)
        and _button_action(p) not in OPEN_TO_ALL["buttons"]
        and _button_action(p) not in FLOW_STEPS
    ]
    assert not missing, f"buttons missing from the authorization table: {missing}"


# --- positive controls: the rightful organiser can (run last: they change the world) ---------


async def _allowed(world: World, step: Step, actor: str = ORGANISER) -> Outcome:
    """``step`` as someone who may: not refused, and audited as done if audited at all."""
    outcome = await attempt(world, actor, step)
    assert not any(p in outcome.seen for p in REFUSED["ko"]), outcome.texts
    assert APOLOGY not in outcome.seen
    assert all(entry.outcome == "ok" for entry in outcome.audit), outcome.audit
    return outcome


async def _status(world: World, model, item_id: int):
    """An item's status as stored now."""
    async with transaction(world.runtime.sessions) as session:
        return (await session.get(model, item_id)).status


async def test_an_organiser_can_change_a_members_tier(world: World):
    outcome = await _allowed(world, press("org:set:{org_a}:{seojun_membership}:t:f"))
    assert "membership" in outcome.changed
    assert [(e.actor_member_id, e.action) for e in outcome.audit] == [
        (world.member_ids[ORGANISER], "members.tier")
    ]


async def test_an_org_admin_can_make_an_admin(world: World):
    outcome = await _allowed(world, press("org:set:{org_a}:{seojun_membership}:r:a"), "admin")
    assert [e.action for e in outcome.audit] == ["members.role"]


async def test_the_bot_admin_can_create_an_organisation_and_grow_a_network(world: World):
    created = await _allowed(world, say("/new_org 새 단체 | new-org"), "bot_admin")
    assert "organization" in created.changed
    joined = await _allowed(world, say("/network_add seoul-net saesol"), "bot_admin")
    assert "networkmember" in joined.changed


async def test_an_organiser_can_close_the_poll(world: World):
    outcome = await _allowed(world, press("poll:closeok:{poll}"))
    assert await _status(world, Poll, world.ids["poll"]) == PollStatus.CLOSED
    assert [e.action for e in outcome.audit] == ["poll.close"]


async def test_an_organiser_can_cancel_a_date(world: World):
    outcome = await _allowed(world, press("mtg:cancel:o:{occurrence}:ok"))
    assert "meetingoccurrence" in outcome.changed
    assert [e.action for e in outcome.audit] == ["meeting.cancel"]


async def test_an_organiser_can_close_the_campaign(world: World):
    outcome = await _allowed(world, press("camp:closeok:{campaign}"))
    assert await _status(world, Campaign, world.ids["campaign"]) == CampaignStatus.CLOSED
    assert [e.action for e in outcome.audit] == ["campaign.close"]


async def test_an_organiser_can_read_and_close_the_petition(world: World):
    summary = await _allowed(world, say("/signatures {petition}"))
    assert "마을버스 증차 요청" in summary.seen
    closed = await _allowed(world, press("pet:closeyes:{petition}"))
    assert "petition" in closed.changed


async def test_an_organiser_can_cancel_the_announcement(world: World):
    outcome = await _allowed(world, press("bc:cancel:{broadcast}"))
    assert "broadcast" in outcome.changed
    assert [e.action for e in outcome.audit] == ["broadcast.cancel"]


async def test_an_organiser_can_export_each_list(world: World):
    for data in (
        "poll:exp:{poll}:r:csv",
        "mtg:export:{meeting}:csv",
        "camp:export:{campaign}:xlsx",
        "pet:exp:{petition}:html",
    ):
        outcome = await _allowed(world, press(data))
        assert len(outcome.texts) == 2, outcome.texts  # the button's answer, then the file


async def test_an_organiser_can_post_a_card_into_the_group(world: World):
    outcome = await _allowed(world, say("/post petition {petition}"))
    assert "postedcard" in outcome.changed


async def test_an_organiser_can_invite_and_link_a_group(world: World):
    invite = await _allowed(world, say("/invite saesol"))
    assert "start=org_saesol" in invite.seen
    local, haeun = world.local, world.people[ORGANISER]
    group = local.emulator.create_group("새솔 운영진방")
    local.emulator.add_member(group["id"], haeun.id, announce=False)
    local.emulator.add_bot_to_group(local.token, group["id"], by_user_id=haeun.id)
    await local.settle()
    before = await snapshot(world)
    reply = (await haeun.say("/link_group saesol", chat_id=group["id"]))[-1]["text"]
    assert "연결했습니다" in reply
    assert changed_tables(before, await snapshot(world)) == ["linkedchat"]


async def test_a_member_can_see_the_members_only_results(world: World):
    outcome = await _allowed(world, say("/results {poll}"), MEMBER)
    assert "마을 축제 날짜" in outcome.seen
