"""How one update is handled: in chat order, a few chats at a time, in one transaction.

For every update: take the chat's turn (updates of one chat never overtake each other), open
one database session, skip the update if its id was handled before, load the person, run the
handlers, record the update id and commit once — and only then make the Bot API calls the
handlers asked for. A failed update is rolled back and the person gets an apology instead.

On SQLite the updates waiting for the database share a transaction (``SharedTransactions``):
each runs in its own part of it (a savepoint once it writes), so one refused update still
changes nothing and the others keep their effects, and all of them commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from telegram import Update
from telegram.error import ChatMigrated, Forbidden, TelegramError
from telegram.ext import BaseUpdateProcessor

from bot.context import Action, UpdateScope, enter_scope, leave_scope
from bot.db import UpdatePart, commit_with_next_row, driver_connection, is_transient, transaction
from bot.i18n import negotiate_language
from bot.services import members, organizations, outbox, updates
from models import Member

if TYPE_CHECKING:
    from bot.context import MoimApplication
    from bot.sqlite_driver import OneTripConnection

log = logging.getLogger(__name__)
DATABASE_ATTEMPTS = 3
# At most this many updates share one transaction: their replies wait for its commit.
SHARED_TRANSACTION_LIMIT = 32


class DatabaseUnavailable(Exception):
    """The database stayed unreachable while an update was handled; it was not handled."""


class ChatLocks:
    """One FIFO lock per chat, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: Any):
        """Wait for this chat's turn."""
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def order_key(update: object) -> Any:
    """Updates with the same key are handled one after another, in arrival order.

    A button press goes in the presser's own lane (their private chat's), not the group's:
    a thousand people tapping one card in a group are independent of each other, and
    serialising them behind one another would make the group's card as slow as one person.
    Each person's own taps and messages to the bot stay in order.
    """
    if isinstance(update, Update):
        if update.callback_query is not None and update.effective_user is not None:
            return ("chat", update.effective_user.id)
        if update.effective_chat is not None:
            return ("chat", update.effective_chat.id)
        if update.effective_user is not None:
            return ("user", update.effective_user.id)
    return None


class UpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, ordered within a chat, one transaction per update."""

    def __init__(self, concurrency: int, *, share_transactions: bool = False) -> None:
        # PTB's own semaphore only bounds tasks in flight; the real bound is ``_slots``, taken
        # after the chat's turn so that one busy chat cannot occupy every slot. Updates that
        # share transactions need none: they reach the database one after another anyway.
        super().__init__(max_concurrent_updates=max(64, concurrency * 32))
        self._slots = (
            contextlib.nullcontext() if share_transactions else asyncio.Semaphore(concurrency)
        )
        self._shared = SharedTransactions(self) if share_transactions else None
        self._chats = ChatLocks()
        self.application: MoimApplication | None = None
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""

    async def wait_idle(self) -> None:
        """Return once no update is being handled (for tests and graceful shutdown)."""
        await self._idle.wait()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Handle one update in its chat's turn.

        A slot bounds the work on the database and the CPU; the Bot API calls that follow
        the commit wait for Telegram without one (still in the chat's turn, so replies keep
        their order). With 50 ms per call, holding a slot while waiting would cap a burst of
        votes at a few slots per 50 ms.
        """
        self.in_flight += 1
        self._idle.clear()
        try:
            async with self._chats.hold(order_key(update)):
                async with self._slots:
                    outcome = await self.transact(update, coroutine)
                await self.follow_up(*outcome)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def transact(
        self, update: object, coroutine: Awaitable[Any]
    ) -> tuple[UpdateScope, bool, int | None]:
        """Run the handlers in one transaction (shared with other updates on SQLite).

        If the database went away meanwhile (a restart, a dropped connection), the whole update
        runs again on a fresh connection, a few times, so it is still handled exactly once.
        """
        application = self.application
        assert application is not None, "UpdateProcessor.application is set by build_application"
        update_id = update.update_id if isinstance(update, Update) else None
        if self._shared is not None:
            outcome = await self._shared.run(update, coroutine, update_id)
            if outcome is not None:
                return outcome
            # The shared transaction failed as a whole: this update runs again on its own.
            coroutine = application.process_update(update)
        for attempt in range(1, DATABASE_ATTEMPTS + 1):
            scope, wrote_outbox = await self._attempt(update, coroutine, update_id)
            if not (scope.failed and is_transient(scope.error)) or attempt == DATABASE_ATTEMPTS:
                break
            log.warning(
                "update %s met a database outage (%s); trying again",
                update_id,
                type(scope.error).__name__,
            )
            await asyncio.sleep(0.5 * attempt)
            coroutine = application.process_update(update)
        return scope, wrote_outbox, update_id

    async def follow_up(
        self, scope: UpdateScope, wrote_outbox: bool, update_id: int | None
    ) -> None:
        """After the transaction: send what the handlers asked for, run after-commit work."""
        runtime = self.application.runtime  # type: ignore[union-attr]
        if scope.duplicate:  # found at commit: the update already had its effect elsewhere
            return
        for action in scope.failure_actions if scope.failed else scope.actions:
            await self.run_action(action)
        if not scope.failed:
            for work in scope.after_commit:
                try:
                    await work()
                except Exception:
                    log.exception("after-commit work failed for update %s", update_id)
            if wrote_outbox:
                runtime.wake_sender()
        elif is_transient(scope.error):
            # Still no database: let the webhook answer 500 so Telegram delivers it again.
            raise DatabaseUnavailable(update_id) from scope.error

    async def _attempt(
        self, update: object, coroutine: Awaitable[Any], update_id: int | None
    ) -> tuple[UpdateScope, bool]:
        """One try at handling the update in one transaction."""
        runtime = self.application.runtime  # type: ignore[union-attr]
        wrote_outbox = False
        async with runtime.sessions() as session:
            scope = UpdateScope(session=session, now=runtime.now(), update_id=update_id)
            token = enter_scope(scope)
            try:
                await _load_person(scope, update, runtime)
                await coroutine
                if scope.failed:
                    await session.rollback()
                    # A twin of this update may have succeeded meanwhile (another instance):
                    # then there is nothing to apologise for.
                    if update_id is not None and await updates.already_processed(
                        session, update_id
                    ):
                        scope.duplicate = True
                else:
                    await self._commit(scope, update, update_id)
                wrote_outbox = outbox.take_enqueued(session)
            except DBAPIError as error:
                _discard(coroutine)
                if not is_transient(error):
                    raise
                scope.failed, scope.error = True, error
                with contextlib.suppress(DBAPIError):
                    await session.rollback()
            finally:
                leave_scope(token)
        return scope, wrote_outbox

    async def _commit(self, scope: UpdateScope, update: object, update_id: int | None) -> None:
        session = scope.session
        try:
            if update_id is not None:
                # The update's id is recorded last, and on SQLite the COMMIT goes with it: one
                # wait fewer while holding the connection every other update is waiting for.
                async with commit_with_next_row(session):
                    recorded = await updates.mark_processed(session, update_id, now=scope.now)
                if not recorded:
                    # Handled before (a redelivery), or by a twin at the same moment: one effect.
                    log.info("update %s was handled before; its repeat is dropped", update_id)
                    await session.rollback()
                    scope.duplicate = True
                    return
            await session.commit()
        except IntegrityError as error:
            await session.rollback()
            await self.fail_at_commit(scope, update, error)

    async def fail_at_commit(self, scope: UpdateScope, update: object, error: Exception) -> None:
        """The update's writes broke a constraint when they reached the database (already
        rolled back): nothing it asked for is sent; the person gets the apology."""
        scope.actions.clear()
        await self.application.process_error(update, error)  # type: ignore[union-attr]
        scope.failed = True

    async def run_action(self, action: Action) -> None:
        """Make one Bot API call; a blocked person is marked unreachable, nothing is raised."""
        bot = self.application.bot  # type: ignore[union-attr]
        runtime = self.application.runtime  # type: ignore[union-attr]
        chat_id = action.chat_id
        try:
            await action(bot)
        except Forbidden:
            if chat_id is not None and chat_id > 0:
                async with transaction(runtime.sessions) as session:
                    await members.mark_unreachable(session, chat_id, now=runtime.now())
            log.info("chat %s cannot be reached (blocked or left)", chat_id)
        except ChatMigrated as error:
            if chat_id is not None:
                async with transaction(runtime.sessions) as session:
                    await organizations.migrate_chat(
                        session, old_chat_id=chat_id, new_chat_id=error.new_chat_id
                    )
        except TelegramError as error:
            log.warning("Bot API call failed after commit: %s: %s", type(error).__name__, error)


@dataclass
class _Waiting:
    """An update waiting for its turn in a shared transaction."""

    update: object
    coroutine: Awaitable[Any]
    update_id: int | None
    outcome: asyncio.Future


class SharedTransactions:
    """On SQLite, the updates waiting for the database run one after another in one
    transaction, each in its own savepoint.

    SQLite has one writer and moim one connection to it, so updates wait for it in any case.
    Opening a session, beginning, recording and committing for each of them cost more CPU than
    most updates' own work; in a burst of taps that was most of the time per tap. Now one
    task takes the updates waiting (at most ``SHARED_TRANSACTION_LIMIT``), runs each in a
    savepoint, and commits once; each update then sends its replies in its own task, in its
    chat's turn, as before. An update that fails rolls back to its savepoint only. If the
    transaction fails as a whole (the database went away), nothing of it stays and each
    update runs again on its own, with the usual retries.
    """

    def __init__(self, processor: UpdateProcessor) -> None:
        self._processor = processor
        self._queue: list[_Waiting] = []
        self._leader: asyncio.Task | None = None

    async def run(
        self, update: object, coroutine: Awaitable[Any], update_id: int | None
    ) -> tuple[UpdateScope, bool, int | None] | None:
        """Handle the update in the next shared transaction; None if that failed as a whole."""
        outcome = asyncio.get_running_loop().create_future()
        waiting = _Waiting(update, coroutine, update_id, outcome)
        self._queue.append(waiting)
        if self._leader is None:
            self._leader = asyncio.create_task(self._lead())
        return await waiting.outcome

    async def _lead(self) -> None:
        """Run shared transactions while updates are waiting."""
        batch: list[_Waiting] = []
        try:
            while self._queue:
                batch = self._queue[:SHARED_TRANSACTION_LIMIT]
                del self._queue[:SHARED_TRANSACTION_LIMIT]
                for waiting, outcome in zip(batch, await self._transact(batch), strict=True):
                    if not waiting.outcome.done():  # its task may have been cancelled
                        waiting.outcome.set_result(outcome)
        except BaseException:  # cancelled at shutdown: nobody may wait forever
            for waiting in batch + self._queue:
                _discard(waiting.coroutine)
                waiting.outcome.cancel()
            raise
        finally:
            self._leader = None

    async def _transact(self, batch: list[_Waiting]) -> list[tuple | None]:
        """One transaction for the batch; a None for each update if it failed as a whole."""
        runtime = self._processor.application.runtime  # type: ignore[union-attr]
        outcomes = []
        try:
            async with runtime.sessions() as session:
                connection = await driver_connection(session)
                # Asked first, so the transaction holds SQLite's write lock from here on.
                seen = await updates.processed_among(
                    session, [w.update_id for w in batch if w.update_id is not None]
                )
                # Everyone's member row in one statement; each stays in the session while
                # the updates run (in step with what they write), until an update fails.
                known = await members.by_telegram_ids(
                    session, {user.id for w in batch if (user := _sender(w.update)) is not None}
                )
                for waiting in batch:
                    outcomes.append(await self._handle(session, connection, waiting, seen, known))
                kept = [
                    scope.update_id
                    for scope, _, _ in outcomes
                    if scope.update_id is not None and not (scope.failed or scope.duplicate)
                ]
                # Every kept update's id in one statement, which carries the COMMIT too.
                async with commit_with_next_row(session):
                    await updates.mark_all_processed(session, kept, now=runtime.now())
                await session.commit()
        except Exception as error:
            log.warning(
                "a transaction shared by %d updates failed (%s); each runs again alone",
                len(batch),
                type(error).__name__,
            )
            for waiting in batch:
                _discard(waiting.coroutine)
            return [None] * len(batch)
        return outcomes

    async def _handle(
        self,
        session: AsyncSession,
        connection: OneTripConnection,
        waiting: _Waiting,
        seen: set[int],
        known: dict[int, Member],
    ) -> tuple[UpdateScope, bool, int | None]:
        """One update in its own part of the shared transaction."""
        runtime = self._processor.application.runtime  # type: ignore[union-attr]
        update, update_id = waiting.update, waiting.update_id
        scope = UpdateScope(session=session, now=runtime.now(), update_id=update_id)
        if update_id in seen:  # handled before (a redelivery): it runs no more
            log.info("update %s was handled before; its repeat is dropped", update_id)
            _discard(waiting.coroutine)
            scope.duplicate = True
            return scope, False, update_id
        token = enter_scope(scope)
        try:
            scope.savepoint = part = UpdatePart(session, connection)
            await _load_person(scope, update, runtime, known)
            await waiting.coroutine
            if scope.failed and (is_transient(scope.error) or not session.is_active):
                # The database went away, or a write broke and SQLAlchemy's session now wants
                # a rollback of everything: every update here runs again, each alone.
                raise scope.error
            if scope.failed:
                await part.rollback()
            else:
                # Its writes are flushed here; one that breaks a constraint raises, and the
                # updates run again alone, where the commit tells the person.
                await part.release()
            wrote_outbox = outbox.take_enqueued(session)
        finally:
            leave_scope(token)
            # The next update starts from the database, as with a session of its own; only
            # the member rows stay, as they are in the database now (a failed update's
            # rollback forgot them too).
            _forget_all_but_members(session)
        if update_id is not None and not scope.failed:
            seen.add(update_id)  # kept: the same id later in this transaction is a repeat
        return scope, wrote_outbox, update_id


def _discard(coroutine: Awaitable[Any]) -> None:
    """A coroutine that will not be awaited (its update is retried with a new one)."""
    close = getattr(coroutine, "close", None)
    if close is not None:
        close()


def _sender(update: object):
    """The Telegram user behind an update, if any."""
    return update.effective_user if isinstance(update, Update) else None


def _forget_all_but_members(session: AsyncSession) -> None:
    """Detach every object from the session except the members it holds."""
    for instance in [o for o in session.identity_map.values() if not isinstance(o, Member)]:
        session.expunge(instance)
    for instance in list(session.new):
        session.expunge(instance)


async def _load_person(
    scope: UpdateScope, update: object, runtime, known: dict[int, Member] | None = None
) -> None:
    """Find the member behind the update (in ``known`` while it is still in the session)
    and the language to answer in."""
    user = _sender(update)
    config = runtime.config
    scope.language = config.bot.default_language
    if user is None:
        return
    scope.language = negotiate_language(user.language_code, config.bot.default_language)
    scope.telegram_user_id = user.id
    member = known.get(user.id) if known else None
    if member is None or member not in scope.session:
        member = await members.by_telegram_id(scope.session, user.id)
    if member is None or member.deleted_at is not None:
        return
    scope.member = member
    scope.language = member.language
