"""The per-update scope (one session, replies sent after commit) and moim's typed context."""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession
from telegram.ext import Application, CallbackContext, ExtBot

from bot import telegram_io
from bot.render import Rendered, plain_text
from bot.services import members
from bot.services.errors import DomainError

if TYPE_CHECKING:
    from bot.db import UpdatePart
    from bot.runtime import Runtime
    from models import Member


@dataclass(frozen=True)
class Action:
    """A Bot API call to make once the update's transaction has committed."""

    call: Callable[[ExtBot], Awaitable[Any]]
    chat_id: int | None = None

    async def __call__(self, bot: ExtBot) -> Any:
        return await self.call(bot)


@dataclass
class UpdateScope:
    """Everything that belongs to handling one update."""

    session: AsyncSession
    now: dt.datetime
    update_id: int | None = None
    member: Member | None = None
    language: str = "ko"
    telegram_user_id: int | None = None
    # Whether the person administers the bot: looked up on first use (few handlers need it).
    admin: bool | None = None
    actions: list[Action] = field(default_factory=list)
    # What to send if handling fails (the apology); replaces ``actions`` then.
    failure_actions: list[Action] = field(default_factory=list)
    failed: bool = False
    error: BaseException | None = None  # what made it fail
    duplicate: bool = False  # another instance handled the same update id first
    # Work for after commit that needs the database again (e.g. remember a sent message's id).
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # When the update shares its transaction with others: its own part of it.
    savepoint: UpdatePart | None = None


_current_scope: contextvars.ContextVar[UpdateScope | None] = contextvars.ContextVar(
    "moim_update_scope", default=None
)


def current_scope() -> UpdateScope:
    """The scope of the update being handled (raises outside of update handling)."""
    scope = _current_scope.get()
    if scope is None:
        raise RuntimeError("no update is being handled here")
    return scope


def enter_scope(scope: UpdateScope) -> contextvars.Token:
    """Make ``scope`` current for this task."""
    return _current_scope.set(scope)


def leave_scope(token: contextvars.Token) -> None:
    """Restore the previous scope."""
    _current_scope.reset(token)


class MoimApplication(Application):
    """PTB's Application carrying moim's runtime."""

    def __init__(self, *, runtime: Runtime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime


class MoimContext(CallbackContext[ExtBot, dict, dict, dict]):
    """The context handlers get: the update's session, member, language, and reply helpers."""

    @property
    def runtime(self) -> Runtime:
        """The application's runtime."""
        return self.application.runtime  # type: ignore[attr-defined]

    @property
    def scope(self) -> UpdateScope:
        """This update's scope."""
        return current_scope()

    @property
    def session(self) -> AsyncSession:
        """This update's database session (committed once, after the handlers ran)."""
        return self.scope.session

    @property
    def now(self) -> dt.datetime:
        """The time this update is handled at (from the injected clock)."""
        return self.scope.now

    @property
    def member(self) -> Member | None:
        """The registered member who sent this update, if any."""
        return self.scope.member

    @property
    def language(self) -> str:
        """The language to answer in."""
        return self.scope.language

    async def is_admin(self) -> bool:
        """True if the person behind this update administers the bot (checked once)."""
        scope = self.scope
        if scope.admin is None:
            scope.admin = scope.telegram_user_id is not None and await members.is_admin(
                scope.session, scope.telegram_user_id, self.runtime.config.bot.admins
            )
        return scope.admin

    def render(self, template: str, **values: Any) -> Rendered:
        """Render a template in this person's language."""
        return self.runtime.renderer.render(template, self.language, **values)

    def later(self, call: Callable[[ExtBot], Awaitable[Any]], chat_id: int | None = None) -> None:
        """Make a Bot API call after the transaction commits (never if it rolls back)."""
        self.scope.actions.append(Action(call, chat_id))

    def send(
        self,
        chat_id: int,
        rendered: Rendered,
        *,
        on_sent: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        """Send a message after commit; ``on_sent(message)`` runs afterwards if given."""

        async def action(bot: ExtBot) -> None:
            if on_sent is None:
                await telegram_io.send(bot, chat_id, rendered, parse=False)
                return
            messages = await telegram_io.send(bot, chat_id, rendered)
            await on_sent(messages[-1])

        self.later(action, chat_id)

    def reply(self, update: Any, rendered: Rendered) -> None:
        """Answer in the chat the update came from."""
        self.send(update.effective_chat.id, rendered)

    def edit(self, chat_id: int, message_id: int, rendered: Rendered) -> None:
        """Replace a message's text and buttons after commit."""
        self.later(lambda bot: telegram_io.edit(bot, chat_id, message_id, rendered), chat_id)

    def answer(
        self, update: Any, text: str | None = None, *, alert: bool = False, url: str | None = None
    ) -> None:
        """Answer the pressed button: a small notice, an alert, or a t.me link to open."""
        query = update.callback_query
        if query is None:
            return
        plain = plain_text(text)[:200] if text else None
        self.later(
            lambda bot: telegram_io.answer_query(bot, query.id, plain, alert=alert, url=url)
        )

    def replace(self, update: Any, rendered: Rendered, *, notice: str | None = None) -> None:
        """Answer a pressed button (with an optional small ``notice``) and show ``rendered``
        in place of the message the button was on."""
        self.answer(update, notice)
        message = update.effective_message
        self.edit(message.chat_id, message.message_id, rendered)

    def send_document(
        self, chat_id: int, *, filename: str, data: bytes, caption: Rendered | None = None
    ) -> None:
        """Send a file after commit."""
        self.later(
            lambda bot: telegram_io.send_document(
                bot, chat_id, filename=filename, data=data, caption=caption
            ),
            chat_id,
        )

    def send_photo(self, chat_id: int, *, data: bytes, caption: Rendered | None = None) -> None:
        """Send an image after commit."""
        self.later(
            lambda bot: telegram_io.send_photo(bot, chat_id, data=data, caption=caption), chat_id
        )

    def card_changed(self, kind: str, item_id: int) -> None:
        """The item's posted cards should show its new state (once this update committed)."""
        cards = self.runtime.cards

        async def touch() -> None:
            if cards is not None:
                cards.touch(kind, item_id)

        self.after_commit(touch)

    def after_commit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` (which opens its own session) once this update has committed."""
        self.scope.after_commit.append(work)

    async def undo(self) -> None:
        """Undo everything the update wrote and queued so far (its action was refused)."""
        scope = self.scope
        if scope.savepoint is None:
            await self.session.rollback()
        else:  # only this update's part of a shared transaction
            await scope.savepoint.rollback()
        scope.actions.clear()
        scope.after_commit.clear()
        # The rollback expired every loaded object; load the person again for what follows.
        user_id = scope.telegram_user_id
        scope.member = await members.by_telegram_id(self.session, user_id) if user_id else None

    async def refusal_apart(self, work: Callable[[], Awaitable[None]]) -> DomainError | None:
        """Run a part of the update that may be refused on its own (a link opened right after
        registering): if it is, its database changes and the replies it queued are undone,
        what came before in the update stays, and the refusal is returned to be told."""
        scope = self.scope
        actions, after_commit = len(scope.actions), len(scope.after_commit)
        try:
            async with self.session.begin_nested():
                await work()
        except DomainError as error:
            del scope.actions[actions:], scope.after_commit[after_commit:]
            return error
        except Exception:
            del scope.actions[actions:], scope.after_commit[after_commit:]
            raise
        return None
