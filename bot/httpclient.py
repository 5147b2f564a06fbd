"""Bot API requests over a small HTTP/1.1 keep-alive client of our own.

Measured against the emulator (2-core machine, PTB 22.8, one sendMessage each): through
httpx a call costs about 1.3 ms of CPU, most of it in httpx, httpcore and anyio; with 64
connections in one httpcore pool 2.8 ms, because the pool is searched on every request. The
Bot API needs little of HTTP — short form-encoded POSTs answered with small JSON — so this
client speaks exactly that over pooled keep-alive connections for about 0.2 ms a call, and
hands the rare request with a file to upload to httpx.

Failures carry their cause, so that the outbox can tell a request that never left (safe to
send again) from one that got no answer (it may have arrived): see :class:`NotSent` and
:class:`NoAnswer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from urllib.parse import urlsplit

import httpx
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest, RequestData

# An idle connection older than this is closed rather than reused (servers drop idle ones).
KEEPALIVE_SECONDS = 30.0
_MAX_HEAD = 64 * 1024


class NotSent(Exception):
    """The request never reached the server (no connection, no free slot): safe to repeat."""


class NoAnswer(Exception):
    """The request went out but no (complete) answer came back: it may have taken effect."""


class _Connection:
    __slots__ = ("reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.monotonic()

    def reusable(self) -> bool:
        fresh = time.monotonic() - self.used < KEEPALIVE_SECONDS
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class BotApiRequest(BaseRequest):
    """PTB's request interface: form-encoded POSTs over pooled keep-alive connections."""

    def __init__(
        self,
        connections: int,
        *,
        read_timeout: float = 15.0,
        write_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        pool_timeout: float = 30.0,
    ) -> None:
        self._slots = asyncio.Semaphore(connections)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._timeouts = {
            "read": read_timeout,
            "write": write_timeout,
            "connect": connect_timeout,
            "pool": pool_timeout,
        }
        self._ssl: ssl.SSLContext | None = None
        # Uploads (multipart) are rare: httpx does them.
        self._uploads = HTTPXRequest(
            connection_pool_size=4,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            connect_timeout=connect_timeout,
            pool_timeout=pool_timeout,
        )

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout."""
        return self._timeouts["read"]

    async def initialize(self) -> None:
        """Open the upload client."""
        await self._uploads.initialize()

    async def shutdown(self) -> None:
        """Close every idle connection and the upload client."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        await self._uploads.shutdown()

    def _timeout(self, kind: str, given: object) -> float | None:
        return self._timeouts[kind] if given is BaseRequest.DEFAULT_NONE else given  # type: ignore[return-value]

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Make one request; returns (HTTP status, body)."""
        if request_data is not None and request_data.contains_files:
            return await self._uploads.do_request(
                url,
                method,
                request_data,
                read_timeout,  # type: ignore[arg-type]
                write_timeout,  # type: ignore[arg-type]
                connect_timeout,  # type: ignore[arg-type]
                pool_timeout,  # type: ignore[arg-type]
            )
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if secure else 80))
        body = b""
        if request_data is not None and request_data.parameters:
            body = request_data.url_encoded_parameters().encode("ascii")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        try:
            async with asyncio.timeout(self._timeout("pool", pool_timeout)):
                await self._slots.acquire()
        except TimeoutError:
            raise TimedOut("Pool timeout: every connection is busy; not sent") from NotSent()
        try:
            connect = self._timeout("connect", connect_timeout)
            connection = await self._connect(key, secure, connect)
            try:
                status, payload, keep = await self._exchange(
                    connection,
                    head + body,
                    self._timeout("write", write_timeout),
                    self._timeout("read", read_timeout),
                )
            except BaseException:
                connection.close()
                raise
            if keep:
                connection.used = time.monotonic()
                self._idle.setdefault(key, []).append(connection)
            else:
                connection.close()
            return status, payload
        finally:
            self._slots.release()

    async def _connect(
        self, key: tuple[str, str, int], secure: bool, seconds: float | None
    ) -> _Connection:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        _scheme, host, port = key
        if secure and self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self._ssl if secure else None, limit=_MAX_HEAD
                )
        except TimeoutError:
            raise TimedOut("Timed out connecting to the Bot API") from NotSent()
        except OSError as error:
            raise NetworkError(f"Cannot connect to the Bot API: {error}") from NotSent()
        return _Connection(reader, writer)

    async def _exchange(
        self,
        connection: _Connection,
        request: bytes,
        write_timeout: float | None,
        read_timeout: float | None,
    ) -> tuple[int, bytes, bool]:
        """Send one request and read its answer; (status, body, connection reusable)."""
        try:
            connection.writer.write(request)
            async with asyncio.timeout(write_timeout):
                await connection.writer.drain()
        except TimeoutError:
            raise TimedOut("Timed out sending to the Bot API") from NoAnswer()
        except OSError as error:
            raise NetworkError(f"Sending to the Bot API failed: {error}") from NoAnswer()
        try:
            async with asyncio.timeout(read_timeout):
                return await _read_response(connection.reader)
        except TimeoutError:
            raise TimedOut("Timed out waiting for the Bot API's answer") from NoAnswer()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            raise NetworkError(f"Reading the Bot API's answer failed: {e!r}") from NoAnswer()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body (by length, chunked, or to the end), keep-alive."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    keep = version == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = keep and b"close" not in value.lower()
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers from the Bot API
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        payload = b"".join(parts)
    elif length is not None:
        payload = await reader.readexactly(length)
    else:
        payload = await reader.read()
        keep = False
    return int(status), payload, keep
