"""Bot API requests: keep-alive, answers of every shape, and failures that say
whether the request left."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.http import BotApiRequest, NoAnswer, NotSent


class Server:
    """A tiny HTTP server answering each request as ``respond`` says; counts connections."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.hang_up_after_answer = False  # as a server does with a connection idle too long
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 1)

    @property
    def url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/bot123:abc/sendMessage"

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(body)
                answer = await self.respond(len(self.requests))
                if answer is None:
                    writer.close()
                    return
                writer.write(answer)
                await writer.drain()
                if self.hang_up_after_answer:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def ok(body: bytes = b'{"ok":true,"result":1}', extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


PARAMETERS = {"chat_id": 42, "text": "안녕 & 잘가"}


def data() -> RequestData:
    return RequestData(
        [RequestParameter.from_input(key, value) for key, value in PARAMETERS.items()]
    )


async def test_requests_share_one_kept_alive_connection_and_bodies_are_json():
    async def respond(number):
        return ok()

    async with Server(respond) as server:
        client = BotApiRequest(connection_pool_size=4)
        await client.initialize()
        answers = [await client.do_request(server.url, "POST", data()) for _ in range(5)]
        await client.shutdown()
    assert answers == [(200, b'{"ok":true,"result":1}')] * 5
    assert server.connections == 1
    assert json.loads(server.requests[0]) == PARAMETERS


async def test_chunked_and_closing_answers_are_read():
    async def respond(number):
        if number == 1:
            return (
                b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
                b'5\r\n{"ok"\r\n9\r\n:false}  \r\n0\r\n\r\n'
            )
        return ok(extra="Connection: close\r\n")

    async with Server(respond) as server:
        client = BotApiRequest(connection_pool_size=4)
        first = await client.do_request(server.url, "POST", data())
        second = await client.do_request(server.url, "POST", data())
        third = await client.do_request(server.url, "POST", data())
        await client.shutdown()
    assert first == (400, b'{"ok":false}  ')
    assert second[0] == third[0] == 200
    assert server.connections == 2  # the "Connection: close" one was not reused


async def test_a_connection_the_server_closed_while_idle_is_not_used_again():
    async def respond(number):
        return ok()

    async with Server(respond) as server:
        server.hang_up_after_answer = True
        client = BotApiRequest(connection_pool_size=4)
        first = await client.do_request(server.url, "POST", data())
        await asyncio.sleep(0.05)  # the server's close arrives while the connection is idle
        second = await client.do_request(server.url, "POST", data())
        await client.shutdown()
    assert first[0] == second[0] == 200
    assert server.connections == 2


async def test_a_cancelled_request_leaves_no_answer_for_the_next_one():
    gate = asyncio.Event()

    async def respond(number):
        if number == 1:
            await gate.wait()
            return ok(b'{"ok":true,"result":"first"}')
        return ok(b'{"ok":true,"result":"second"}')

    async with Server(respond) as server:
        client = BotApiRequest(connection_pool_size=1)
        first = asyncio.create_task(client.do_request(server.url, "POST", data()))
        await asyncio.sleep(0.05)
        first.cancel()
        gate.set()
        second = await client.do_request(server.url, "POST", data())
        await client.shutdown()
    assert second == (200, b'{"ok":true,"result":"second"}')


async def test_no_answer_means_it_may_have_arrived():
    async def silent(number):
        await asyncio.sleep(5)
        return ok()

    async with Server(silent) as server:
        client = BotApiRequest(connection_pool_size=4, read_timeout=0.1)
        with pytest.raises(TimedOut) as caught:
            await client.do_request(server.url, "POST", data())
        await client.shutdown()
    assert isinstance(caught.value.__cause__, NoAnswer)

    async def hang_up(number):
        return None

    async with Server(hang_up) as server:
        client = BotApiRequest(connection_pool_size=4)
        with pytest.raises(NetworkError) as caught:
            await client.do_request(server.url, "POST", data())
        await client.shutdown()
    assert isinstance(caught.value.__cause__, NoAnswer)


async def test_a_request_that_never_left_says_so():
    client = BotApiRequest(connection_pool_size=1, pool_timeout=0.1)
    with pytest.raises(NetworkError) as caught:  # nobody listens on port 9
        await client.do_request("http://127.0.0.1:9/bot1:a/getMe", "POST", None)
    assert isinstance(caught.value.__cause__, NotSent)

    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow(number):
        arrived.set()
        await release.wait()
        return ok()

    async with Server(slow) as server:
        busy = asyncio.create_task(client.do_request(server.url, "POST", data()))
        await arrived.wait()
        with pytest.raises(TimedOut) as caught:  # the only connection is busy
            await client.do_request(server.url, "POST", data())
        release.set()
        assert (await busy)[0] == 200
    await client.shutdown()
    assert isinstance(caught.value.__cause__, NotSent)
