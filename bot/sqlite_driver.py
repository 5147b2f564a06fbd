"""SQLite through aiosqlite with one trip to its thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips to aiosqlite's worker thread for every
statement (open a cursor, execute, fetch the rows, close the cursor), and each trip waits for a
turn of the event loop. SQLite has one writer, so a write transaction's trips are where every
other update waits: under a burst of taps that waiting, not SQLite, set the pace. This adapter
does the four steps in one function on the worker thread, so a statement costs one trip.
Everything else (the connection, transactions, errors) is SQLAlchemy's own adapter.

Statements whose answer nobody reads travel with the next one instead of making their own trip:
BEGIN IMMEDIATE, SAVEPOINT and RELEASE SAVEPOINT. And a statement can carry the transaction's
COMMIT (``commit_if_row``): moim records each update's id last, and commits in that same trip.
Measured with the bursts in bench/: the one connection was in use 95 % of the time, and a
transaction held it for about 0.6 ms per trip, mostly waiting for the event loop's turn.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# Statements that answer nothing anyone reads: they wait and go with the next statement.
_RIDE_ALONG = ("SAVEPOINT ", "RELEASE SAVEPOINT ")
# A write marked with this (``.prefix_with(WITH_NEXT, dialect="sqlite")``) answers nothing
# anyone reads either: it goes with the same update's next statement, so a failure is still
# that update's own (UpdatePart.release sends a write left over at the part's end).
WITH_NEXT = "/* with the next statement */"
# The savepoint of an update's part of a shared transaction (see OneTripConnection).
_PART = "moim_update_part"


def _run_statement(
    connection: sqlite3.Connection,
    operation: str,
    parameters: Any,
    many: bool,
    lead: tuple[Waiting, ...],
    commit_if_row: bool,
) -> tuple[Any, list[Any], int, int | None, bool]:
    """On the worker thread: the waiting statements, then this one with all its rows, and
    the COMMIT if asked and a row came back; in one go."""
    cursor = connection.cursor()
    try:
        _run_waiting(cursor, lead)
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        committed = bool(commit_if_row and rows)
        if committed:
            connection.commit()
        return description, rows, cursor.rowcount, cursor.lastrowid, committed
    finally:
        cursor.close()


def _finish(connection: sqlite3.Connection, lead: tuple[Waiting, ...]) -> None:
    """On the worker thread: the waiting statements, then COMMIT."""
    _run_waiting(connection, lead)
    connection.commit()


def _run_waiting(runner: sqlite3.Connection | sqlite3.Cursor, lead: tuple[Waiting, ...]) -> None:
    """On the worker thread: statements that waited for a trip, in order."""
    for statement in lead:
        if isinstance(statement, str):
            runner.execute(statement)
        else:
            runner.execute(*statement)


# A statement waiting for the next trip: its text, or its text and parameters.
Waiting = str | tuple[str, Any]


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose rows are fetched with the statement; it holds no sqlite3 cursor."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description = None
        self._rowcount = -1
        self._lastrowid = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        """The result's columns, as the statement left them."""
        return self._description

    @property
    def rowcount(self) -> int:
        """Rows the statement changed."""
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        """The row id of the last inserted row."""
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        """Rows fetchmany() returns by default."""
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed on the worker thread."""

    def close(self) -> None:
        """Forget any rows not read."""
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        if not parameters and operation.startswith(_RIDE_ALONG):
            adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
            adapted.save_part()
            adapted.waiting.append(operation)
            self._description, self._rows, self._rowcount = None, collections.deque(), -1
            return None
        if operation.find(WITH_NEXT, 0, 40) >= 0:
            adapted = self._adapt_connection  # type: ignore[assignment]
            adapted.save_part()
            adapted.waiting.append((operation, parameters))
            self._description, self._rows, self._rowcount = None, collections.deque(), -1
            return None
        return await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        if adapted.committed_early:
            raise sqlite3.ProgrammingError("a statement after its transaction's COMMIT")
        if not operation.startswith("SELECT"):
            adapted.save_part()  # the update's first write: its savepoint goes first
        async with adapted._execute_mutex:
            # If BEGIN fails (the database stayed locked), the transaction is rolled back and
            # the next one arms its own BEGIN: nothing to restore here.
            lead = adapted.take_lead()
            commit_if_row, adapted.commit_if_row = adapted.commit_if_row, False
            outcome = await connection._execute(
                _run_statement,
                connection._conn,
                operation,
                parameters,
                many,
                lead,
                commit_if_row,
            )
        self._description, rows, self._rowcount, self._lastrowid, committed = outcome
        self._rows = collections.deque(rows)
        adapted.committed_early = committed

    def nextset(self) -> None:
        """SQLite returns one result set per statement."""
        return None

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Not used by SQLite."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection, handing out :class:`OneTripCursor`.

    ``begin_immediate()`` does not go to SQLite at once: the BEGIN IMMEDIATE travels with
    the transaction's first statement, and a transaction that ran none ends without a trip.
    Savepoints wait in ``waiting`` the same way. Set ``commit_if_row`` and the next statement
    commits in its own trip when it returns a row; ``commit()`` then has nothing left to do.

    An update's part of a shared transaction (``begin_part`` .. ``end_part``) gets its own
    savepoint, made by the driver before the part's first write: most parts that are refused
    wrote nothing, and SQLAlchemy's savepoints cost more CPU than many an update's own work.
    SQLAlchemy does not know of these savepoints; ``UpdatePart`` keeps its session in step.
    """

    __slots__ = (
        "begin_pending",
        "commit_if_row",
        "committed_early",
        "part_open",
        "part_saved",
        "waiting",
    )
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.begin_pending = False
        self.commit_if_row = False
        self.committed_early = False
        self.waiting: list[Waiting] = []
        self.part_open = False  # an update's part is running
        self.part_saved = False  # and its savepoint was made

    def begin_part(self) -> None:
        """An update's part of the transaction starts; its savepoint waits for a write."""
        self.part_open, self.part_saved = True, False

    def save_part(self) -> None:
        """Before the part's first write: its savepoint, with the next statement."""
        if self.part_open and not self.part_saved:
            self.part_saved = True
            self.waiting.append(f"SAVEPOINT {_PART}")

    def undo_part(self) -> None:
        """Undo what the part wrote (the savepoint stays: the part goes on from there)."""
        if self.part_saved:
            self.waiting.append(f"ROLLBACK TO SAVEPOINT {_PART}")

    def writes_waiting(self) -> bool:
        """True if a write still waits for a trip."""
        return any(not isinstance(statement, str) for statement in self.waiting)

    async def send_waiting(self) -> None:
        """Send what waits now, in a trip of its own (from async code, not SQLAlchemy's)."""
        async with self._execute_mutex:
            connection = self._connection
            await connection._execute(_run_waiting, connection._conn, self.take_lead())

    def end_part(self) -> None:
        """The part is done and keeps its writes."""
        if self.part_saved:
            self.waiting.append(f"RELEASE SAVEPOINT {_PART}")
        self.part_open = self.part_saved = False

    def begin_immediate(self) -> None:
        """Start a write transaction with the next statement."""
        self.begin_pending = True

    def take_lead(self) -> tuple[Waiting, ...]:
        """What must run before the next statement: BEGIN, then the waiting savepoints."""
        lead = ("BEGIN IMMEDIATE", *self.waiting) if self.begin_pending else tuple(self.waiting)
        self.begin_pending = False
        self.waiting.clear()
        return lead

    def _untouched(self) -> bool:
        """True (and forgets the transaction) if it never reached SQLite or already ended."""
        self.commit_if_row = False
        self.part_open = self.part_saved = False
        untouched = self.begin_pending or self.committed_early
        self.begin_pending = self.committed_early = False
        if untouched:
            self.waiting.clear()
        return untouched

    def commit(self) -> None:
        """Commit, with any savepoint still waiting; no trip if there is nothing to commit."""
        if self._untouched():
            return
        if not self.waiting:
            super().commit()
            return
        try:
            await_(self._connection._execute(_finish, self._connection._conn, self.take_lead()))
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        """Roll back (nothing to do if the transaction never reached SQLite)."""
        self.waiting.clear()
        if self._untouched():
            return
        super().rollback()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """SQLAlchemy's aiosqlite module adapter, making :class:`OneTripConnection`."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        """Open a connection (aiosqlite's thread is a daemon, as in SQLAlchemy's adapter)."""
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True
        return OneTripConnection(self, await_(connection))


def one_trip_dbapi() -> OneTripDBAPI:
    """The module to pass as ``create_async_engine(..., module=...)`` for SQLite URLs."""
    return OneTripDBAPI(aiosqlite, sqlite3)
