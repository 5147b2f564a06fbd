"""SQLite through aiosqlite with one trip to its thread per statement.

SQLAlchemy's aiosqlite adapter makes four trips to aiosqlite's worker thread for every
statement (open a cursor, execute, fetch the rows, close the cursor), and each trip waits for a
turn of the event loop. SQLite has one writer, so a write transaction's trips are where every
other update waits: under a burst of taps that waiting, not SQLite, set the pace. This adapter
does the four steps in one function on the worker thread, so a statement costs one trip.
Everything else (the connection, transactions, errors) is SQLAlchemy's own adapter.
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


def _run_statement(
    connection: sqlite3.Connection, operation: str, parameters: Any, many: bool, begin: bool
) -> tuple[Any, list[Any], int, int | None]:
    """On the worker thread: (begin,) execute, fetch everything and close, in one go."""
    cursor = connection.cursor()
    try:
        if begin:
            cursor.execute("BEGIN IMMEDIATE")
        if many:
            cursor.executemany(operation, parameters)
        else:
            cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


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
        return await self._trip(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        return await self._trip(operation, seq_of_parameters, many=True)

    async def _trip(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        async with adapted._execute_mutex:
            # If BEGIN fails (the database stayed locked), the transaction is rolled back and
            # the next one arms its own BEGIN: nothing to restore here.
            begin, adapted.begin_pending = adapted.begin_pending, False
            outcome = await connection._execute(
                _run_statement, connection._conn, operation, parameters, many, begin
            )
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    def nextset(self) -> None:
        """SQLite returns one result set per statement."""
        return None

    def setinputsizes(self, *inputsizes: Any) -> None:
        """Not used by SQLite."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection, handing out :class:`OneTripCursor`.

    ``begin_immediate()`` does not go to SQLite at once: the BEGIN IMMEDIATE travels with
    the transaction's first statement, and a transaction that ran none ends without a trip.
    """

    __slots__ = ("begin_pending",)
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.begin_pending = False

    def begin_immediate(self) -> None:
        """Start a write transaction with the next statement."""
        self.begin_pending = True

    def commit(self) -> None:
        """Commit (nothing to do if the transaction never reached SQLite)."""
        if self.begin_pending:
            self.begin_pending = False
            return
        super().commit()

    def rollback(self) -> None:
        """Roll back (nothing to do if the transaction never reached SQLite)."""
        if self.begin_pending:
            self.begin_pending = False
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
