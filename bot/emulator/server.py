"""The emulator's HTTP face: a lean ASGI app served by uvicorn in the caller's event loop.

Routes: /bot<token>/<method> (Bot API), /file/bot<token>/<path> (downloads) and
/_emulator/<name> (control API, JSON in and out).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from bot.emulator.control import handle_control
from bot.emulator.emulator import Emulator
from bot.emulator.errors import ApiError
from bot.emulator.request import parse_request

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_NOT_FOUND = b'{"ok":false,"error_code":404,"description":"Not Found"}'


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class EmulatorApp:
    """A raw ASGI app: no router, no middleware; every request is a small JSON exchange."""

    def __init__(self, emulator: Emulator):
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        path: str = scope["path"]
        if path.startswith("/bot"):
            status, payload = await self._bot_api(scope, path[4:], body)
        elif path.startswith("/file/bot"):
            await self._download(path[9:], send)
            return
        elif path.startswith("/_emulator/"):
            status, control = await self._control(path[11:], body)
            payload = _dumps(control)
        else:
            status, payload = 404, _NOT_FOUND
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _bot_api(self, scope: Scope, rest: str, body: bytes) -> tuple[int, bytes]:
        token, _, method = rest.partition("/")
        if not method or "/" in method:
            return 404, _NOT_FOUND
        content_type = ""
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
                break
        try:
            params, files = parse_request(content_type, body, scope.get("query_string", b""))
        except ApiError as err:
            return err.code, _dumps(err.to_body())
        status, result = await self.emulator.call(token, method, params, files)
        return status, _dumps(result)

    async def _download(self, rest: str, send: Send) -> None:
        token, _, file_path = rest.partition("/")
        status, content_type, data = 404, b"application/json", _NOT_FOUND
        if token not in self.emulator.bots:
            status, data = 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'
        else:
            file = self.emulator.files_by_path.get(file_path)
            if file is not None:
                status, data = 200, file.data
                content_type = (file.mime_type or "application/octet-stream").encode("latin-1")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _control(self, name: str, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return 400, {"ok": False, "error": "request body is not JSON", "type": "TypeError"}
        return await handle_control(self.emulator, name, args)


class LocalServer:
    """Serve any ASGI app with uvicorn in the running event loop, without signal handlers."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
    ):
        self.app = app
        self.host = host
        self.port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; afterwards `port` holds the bound port (also for port 0)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            http="httptools",
            ws="none",
            lifespan="off",
            log_config=None,
            log_level=self._log_level,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
        config.load()
        server = uvicorn.Server(config)
        # Server.serve() would install signal handlers; its parts don't, so call them here.
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup()
        except SystemExit as exc:  # uvicorn exits the process when it can't bind
            raise OSError(f"could not listen on {self.host}:{self.port}") from exc
        self._server = server
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (2 s at most), close connections."""
        server = self._server
        if server is None:
            return
        self._server = None
        # uvicorn's own shutdown polls every 0.1 s; waiting on the request tasks is quicker
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        tasks = set(server.server_state.tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)
        for listener in server.servers:
            await listener.wait_closed()

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EmulatorServer(LocalServer):
    """Serve an Emulator over HTTP on host:port (port 0 picks a free one) in this event loop."""

    def __init__(
        self,
        emulator: Emulator,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
    ):
        super().__init__(EmulatorApp(emulator), host, port, log_level=log_level)
        self.emulator = emulator

    @property
    def base_url(self) -> str:
        """What to give PTB as base_url (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """What to give PTB as base_file_url."""
        return f"{self.url}/file/bot"

    @property
    def control_url(self) -> str:
        """Root of the control API, for EmulatorClient."""
        return f"{self.url}/_emulator"

    async def stop(self) -> None:
        """Release held requests (long polls, stalls), then stop the server."""
        if self._server is not None:
            self.emulator.interrupt()
        await super().stop()

    async def __aenter__(self) -> EmulatorServer:
        await self.start()
        return self
