"""Bot API requests over aiohttp: PTB's request interface on a faster, well-kept client.

PTB's default (httpx on httpcore) spends about 1.3 ms of CPU on each Bot API call; moim makes
one or two calls per update, so that was most of an update's cost. aiohttp parses HTTP in C
and keeps connections alive, for a fraction of that (see bench/ and the commit message).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


class NotSent(Exception):
    """The request never reached the server (no connection, no free slot): safe to repeat."""


class NoAnswer(Exception):
    """The request went out but no (complete) answer came back: it may have taken effect."""


class AiohttpRequest(BaseRequest):
    """PTB's BaseRequest over one aiohttp session with a bounded keep-alive pool."""

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
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB extends it for long polling)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (idempotent)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300),
                headers={"User-Agent": self.USER_AGENT},
                # PTB decides about timeouts per request; no session-wide total.
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

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
        if self._session is None or self._session.closed:
            await self.initialize()
        files = request_data.multipart_data if request_data else None
        fields = request_data.json_parameters if request_data else None
        if isinstance(read_timeout, DefaultValue):
            read_timeout = self._read_timeout
        if isinstance(connect_timeout, DefaultValue):
            connect_timeout = self._connect_timeout
        if isinstance(pool_timeout, DefaultValue):
            pool_timeout = self._pool_timeout
        if isinstance(write_timeout, DefaultValue):
            write_timeout = self._media_write_timeout if files else self._write_timeout
        # aiohttp has no separate write timeout: the request may take connect + write + read.
        total = None
        if read_timeout is not None and write_timeout is not None:
            total = (connect_timeout or 0) + (pool_timeout or 0) + write_timeout + read_timeout
        timeout = aiohttp.ClientTimeout(
            total=total,
            connect=pool_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        headers = None
        if files:
            body = _form(fields, files)
        elif fields:
            # Encoded here: handing aiohttp a dict builds a multipart writer (and a uuid4
            # boundary) for every call before it settles on this same urlencoded body.
            body, headers = urlencode(fields).encode(), FORM_HEADERS
        else:
            body = None
        # Failures say whether the request left (see NotSent and NoAnswer): the outbox resends
        # what never left and treats a missing answer as "may have arrived".
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
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
