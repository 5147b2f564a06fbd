"""Bot API requests: PTB's request interface on a lean keep-alive HTTP/1.1 client.

PTB's default (httpx on httpcore) spent about 1.3 ms of CPU on each Bot API call, and aiohttp
0.17 ms; moim makes one or two calls per update, so that was a good part of an update's cost.
A Bot API call is always the same shape: a POST with a small JSON body to one host, answered
with a small JSON body. So moim writes that request itself on a kept-alive connection and
lets httptools (the C parser uvicorn uses) read the answer: 0.06 ms of CPU per call, measured
against the emulator. Uploads (multipart) still go through aiohttp.
"""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
from urllib.parse import urlsplit

import aiohttp
import httptools
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# Heads of requests kept ready: the Bot API has about 150 methods.
TARGETS_KEPT = 512


class NotSent(Exception):
    """The request never reached the server (no connection, no free slot): safe to repeat."""


class NoAnswer(Exception):
    """The request went out but no (complete) answer came back: it may have taken effect."""


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time; httptools reads answers."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._answer: asyncio.Future | None = None

    # asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # httptools' side
    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        answer, self._answer = self._answer, None
        body, self._body = b"".join(self._body), []
        if not self._parser.should_keep_alive():
            self.close()
        if answer is not None and not answer.done():
            answer.set_result((self._parser.get_status_code(), body))

    def _fail(self, error: BaseException) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one whole request; its status and body."""
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._answer

    def close(self) -> None:
        """Close the connection (an answer still awaited fails)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Kept-alive connections to one server: reused while idle, at most ``size`` at once."""

    def __init__(self, scheme: str, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.ssl = ssl.create_default_context() if scheme == "https" else None
        self._slots = asyncio.Semaphore(size)
        self._idle: collections.deque[_Connection] = collections.deque()
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"

    async def request(
        self, head: bytes, body: bytes, *, pool_timeout, connect_timeout, read_timeout
    ) -> tuple[int, bytes]:
        """One exchange on a free connection; failures say whether the request left."""
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError as error:
            raise TimedOut("No free connection to the Bot API; not sent") from NotSent(error)
        try:
            connection = await self._connection(connect_timeout)
            try:
                async with asyncio.timeout(read_timeout):
                    answer = await connection.exchange(head + body)
            except TimeoutError as error:
                connection.close()
                raise TimedOut("Timed out waiting for the Bot API's answer") from NoAnswer(error)
            except (OSError, httptools.HttpParserError) as error:
                connection.close()
                raise NetworkError(
                    f"The Bot API's answer did not arrive: {type(error).__name__}: {error}"
                ) from NoAnswer(error)
            except BaseException:  # cancelled midway: its answer would confuse the next one
                connection.close()
                raise
            if not connection.closed:
                self._idle.append(connection)
            return answer
        finally:
            self._slots.release()

    async def _connection(self, connect_timeout) -> _Connection:
        """An idle connection still open, or a new one."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError as error:
            raise TimedOut("Timed out connecting to the Bot API; not sent") from NotSent(error)
        except OSError as error:
            raise NetworkError(f"Cannot connect to the Bot API: {error}") from NotSent(error)
        return connection

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._idle.pop().close()


class BotApiRequest(BaseRequest):
    """PTB's BaseRequest: Bot API calls on kept-alive connections, uploads through aiohttp."""

    def __init__(
        self,
        *,
        connection_pool_size: int = 16,
        read_timeout: float = 15.0,
        write_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        pool_timeout: float = 30.0,
        media_write_timeout: float = 30.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        # Each method's URL split once: its pool, and the request's head up to the body's length
        self._targets: dict[tuple[str, str], tuple[_Pool, bytes]] = {}
        self._uploads: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB extends it for long polling)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Nothing to open: connections are made on first use."""

    async def shutdown(self) -> None:
        """Close the kept-alive connections and the upload session."""
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._targets.clear()
        if self._uploads is not None and not self._uploads.closed:
            await self._uploads.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout=BaseRequest.DEFAULT_NONE,
        write_timeout=BaseRequest.DEFAULT_NONE,
        connect_timeout=BaseRequest.DEFAULT_NONE,
        pool_timeout=BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Make one HTTP request; PTB turns the status and body into results or errors."""
        files = request_data.multipart_data if request_data else None
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._media_write_timeout if files else self._write_timeout
        if files:
            return await self._upload(
                url, method, request_data, files, read_timeout, write_timeout, connect_timeout
            )
        # A call's body is small and leaves in one write: waiting means waiting for the answer.
        pool, head = self._target(url, method)
        body = json.dumps(request_data.parameters).encode() if request_data else b""
        return await pool.request(
            head + b"%d\r\n\r\n" % len(body),
            body,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    def _target(self, url: str, method: str) -> tuple[_Pool, bytes]:
        """The pool for the URL's server and the request's head, up to its length."""
        found = self._targets.get((method, url))
        if found is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise NetworkError(f"Not an HTTP URL: {url}") from NotSent(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            key = (parts.scheme, parts.hostname, port)
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = _Pool(*key, size=self._pool_size)
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            head = (
                f"{method} {target} HTTP/1.1\r\nHost: {pool.host_header}\r\n"
                f"User-Agent: {self.USER_AGENT}\r\nContent-Type: application/json\r\n"
                "Content-Length: "
            ).encode("latin-1")
            if len(self._targets) >= TARGETS_KEPT:  # file downloads have URLs of their own
                self._targets.clear()
            found = self._targets[method, url] = (pool, head)
        return found

    async def _upload(
        self, url, method, request_data, files, read_timeout, write_timeout, connect_timeout
    ) -> tuple[int, bytes]:
        """A request with files: a multipart body through aiohttp."""
        if self._uploads is None or self._uploads.closed:
            self._uploads = aiohttp.ClientSession(
                headers={"User-Agent": self.USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=None),
            )
        total = None
        if read_timeout is not None and write_timeout is not None:
            total = (connect_timeout or 0) + write_timeout + read_timeout
        timeout = aiohttp.ClientTimeout(
            total=total, sock_connect=connect_timeout, sock_read=read_timeout
        )
        try:
            async with self._uploads.request(
                method, url, data=_form(request_data.json_parameters, files), timeout=timeout
            ) as answer:
                return answer.status, await answer.read()
        except aiohttp.ConnectionTimeoutError as error:
            raise TimedOut("Timed out connecting to the Bot API; not sent") from NotSent(error)
        except aiohttp.ClientConnectorError as error:
            raise NetworkError(f"Cannot connect to the Bot API: {error}") from NotSent(error)
        except TimeoutError as error:
            raise TimedOut("Timed out waiting for the Bot API's answer") from NoAnswer(error)
        except asyncio.CancelledError:
            raise
        except aiohttp.ClientError as error:
            raise NetworkError(
                f"The Bot API's answer did not arrive: {type(error).__name__}: {error}"
            ) from NoAnswer(error)


def _form(fields: dict | None, files: dict) -> aiohttp.FormData:
    """A multipart body: the parameters as fields, each upload as a file part."""
    # Unquoted: Telegram shows a percent-encoded file name as is, so 명단.csv would arrive as
    # %EB%AA%85%EB%8B%A8.csv; UTF-8 in the header is what PTB's httpx sends too.
    form = aiohttp.FormData(quote_fields=False)
    for name, value in (fields or {}).items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in files.items():
        if hasattr(content, "read"):
            content = content.read()
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form
