"""Webhook mode: our own small ASGI server, so an update is acknowledged only once handled.

PTB's built-in webhook server answers Telegram before the update is processed; a crash in
between would lose it. Here the answer (200) comes after the update's transaction committed;
a failure answers 500 and Telegram delivers the update again (it is then deduplicated).
"""

from __future__ import annotations

import hmac
import json
import logging
from urllib.parse import urlparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from telegram import Update

from bot.config import Config
from bot.context import MoimApplication
from bot.db import read_retrying_once
from bot.processing import DatabaseUnavailable

log = logging.getLogger(__name__)
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member", "channel_post"]


def webhook_path(config: Config) -> str:
    """The path part of the public webhook URL ("/telegram" by default)."""
    return urlparse(config.telegram.webhook_url).path or "/telegram"


def create_webhook_app(application: MoimApplication, config: Config) -> Starlette:
    """The ASGI app: POST <path> for Telegram, GET /healthz for the load balancer."""
    secret = config.telegram.webhook_secret.encode()

    async def receive_update(request: Request) -> Response:
        given = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
        if not hmac.compare_digest(given, secret):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            data = json.loads(await request.body())
            update = Update.de_json(data, application.bot)
        except (ValueError, TypeError, KeyError):
            return PlainTextResponse("bad update", status_code=400)
        try:
            await application.update_processor.process_update(
                update, application.process_update(update)
            )
        except DatabaseUnavailable:
            log.warning(
                "update %s not handled (database unavailable); Telegram will retry",
                update.update_id,
            )
            return PlainTextResponse("retry", status_code=500)
        except Exception:
            log.exception("update %s could not be handled; Telegram will retry", update.update_id)
            return PlainTextResponse("retry", status_code=500)
        return Response(status_code=200)

    async def health(_request: Request) -> Response:
        from sqlalchemy import text

        runtime = application.runtime
        try:
            await read_retrying_once(runtime.sessions, lambda s: s.exec(text("SELECT 1")))
        except Exception:
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "instance": runtime.instance_id})

    return Starlette(
        routes=[
            Route(webhook_path(config), receive_update, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


async def serve_webhook(application: MoimApplication, config: Config) -> None:
    """Start the bot, register the webhook with Telegram, and serve until stopped."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_webhook_app(application, config),
            host=config.telegram.listen_host,
            port=config.telegram.listen_port,
            log_level="warning",
            lifespan="off",
        )
    )
    async with application:
        # post_init/post_shutdown run by themselves only inside run_polling().
        await application.post_init(application)
        await application.start()
        await application.bot.set_webhook(
            config.telegram.webhook_url,
            secret_token=config.telegram.webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=40,
        )
        log.info(
            "serving the webhook on %s:%s",
            config.telegram.listen_host,
            config.telegram.listen_port,
        )
        try:
            await server.serve()
        finally:
            await application.stop()
            await application.post_shutdown(application)
