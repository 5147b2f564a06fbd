"""Run the emulator standalone: python -m bot.emulator --port 8081 [--token T] ..."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from bot.emulator.emulator import Emulator
from bot.emulator.limits import Faults, Limits
from bot.emulator.server import EmulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bot.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument(
        "--token", action="append", default=[], help="create a bot with this token (repeatable)"
    )
    parser.add_argument("--username", default="moim_bot", help="username of the --token bot(s)")
    parser.add_argument("--no-limits", action="store_true", help="disable the rate limits")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    parser.add_argument("--seed", type=int, default=None, help="seed for fault injection")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start the server, print its URL, run until SIGINT or SIGTERM."""
    emulator = Emulator(
        limits=Limits(enabled=not args.no_limits),
        faults=Faults(latency=args.latency_ms / 1000.0, seed=args.seed),
    )
    for index, token in enumerate(args.token):
        username = args.username if index == 0 else f"{args.username}{index + 1}"
        emulator.create_bot(token, username, "Moim")
    server = EmulatorServer(emulator, args.host, args.port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(
        f"emulator ready at {server.url} base_url={server.base_url} "
        f"control_url={server.control_url}",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        await emulator.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
