"""The baseline: a bare python-telegram-bot echo bot (echoes texts, answers button presses).

python -m bench.echo_bot --token T --base-url http://127.0.0.1:PORT/bot [--concurrency N]
"""

from __future__ import annotations

import argparse

from telegram import Update
from telegram.ext import (
    ApplicationBuilder,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)


async def echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send the text back."""
    await update.effective_message.reply_text(update.effective_message.text)


async def answer(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    """Answer a button press with its data."""
    await update.callback_query.answer(update.callback_query.data)


def main() -> None:
    """Run the echo bot by long polling until stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=0)
    args = parser.parse_args()
    builder = ApplicationBuilder().token(args.token).base_url(args.base_url)
    if args.concurrency:
        builder = builder.concurrent_updates(args.concurrency)
    application = builder.build()
    application.add_handler(MessageHandler(filters.TEXT, echo))
    application.add_handler(CallbackQueryHandler(answer))
    application.run_polling(poll_interval=0.0, timeout=10)


if __name__ == "__main__":
    main()
