"""Measure the emulator: requests per second it serves and getUpdates round trips.

Run: .venv/bin/python -m tests.emulator.throughput [--quick]
The figures are printed, never asserted (the smoke test only keeps this script working).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
from telegram import Bot

from bot.emulator import Emulator, EmulatorClient, EmulatorServer

TOKEN = "123456:BENCH"
ROOT = Path(__file__).resolve().parents[2]


def _world() -> tuple[Emulator, int]:
    emulator = Emulator()
    emulator.limits.enabled = False
    emulator.create_bot(TOKEN, "bench_bot")
    person = emulator.create_user("Bench")
    emulator.send_text(TOKEN, person["id"], "/start")
    return emulator, person["id"]


async def send_with_ptb(count: int) -> float:
    """sendMessage per second through PTB's Bot, one call after the other, same process."""
    emulator, chat_id = _world()
    async with EmulatorServer(emulator) as server, Bot(TOKEN, base_url=server.base_url) as bot:
        await bot.send_message(chat_id, "warm-up")
        started = time.perf_counter()
        for n in range(count):
            await bot.send_message(chat_id, f"message {n}")
        elapsed = time.perf_counter() - started
    await emulator.close()
    return count / elapsed


async def send_with_httpx(count: int, concurrency: int = 1) -> float:
    """sendMessage per second through one keep-alive httpx client, same process."""
    emulator, chat_id = _world()
    async with EmulatorServer(emulator) as server, httpx.AsyncClient() as client:
        url = f"{server.base_url}{TOKEN}/sendMessage"

        async def worker(share: int) -> None:
            for n in range(share):
                response = await client.post(url, data={"chat_id": chat_id, "text": f"m{n}"})
                assert response.status_code == 200

        await worker(1)
        started = time.perf_counter()
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    await emulator.close()
    return (count // concurrency) * concurrency / elapsed


async def get_updates_round_trips(count: int) -> float:
    """Inject an update, fetch it with PTB's get_updates (confirming the last): trips per s."""
    emulator, chat_id = _world()
    async with EmulatorServer(emulator) as server, Bot(TOKEN, base_url=server.base_url) as bot:
        offset = (await bot.get_updates())[-1].update_id + 1
        started = time.perf_counter()
        for n in range(count):
            emulator.send_text(TOKEN, chat_id, f"u{n}")
            updates = await bot.get_updates(offset=offset, timeout=10)
            offset = updates[-1].update_id + 1
        elapsed = time.perf_counter() - started
    await emulator.close()
    return count / elapsed


async def _raw_client(
    host: str, port: int, request: bytes, stop: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    while time.perf_counter() < stop:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
        await reader.readexactly(length)
        done += 1
    writer.close()
    counts.append(done)


RICH = {
    "text": "<b>주민 총회</b> 투표가 열렸습니다 &amp; 마감은 금요일 19:30",
    "parse_mode": "HTML",
    "reply_markup": (
        '{"inline_keyboard": [[{"text": "찬성", "callback_data": "v1:poll:vote:42:1"}, '
        '{"text": "반대", "callback_data": "v1:poll:vote:42:2"}]]}'
    ),
}


async def server_capacity(
    seconds: float = 3.0, connections: int = 16, *, rich: bool = False
) -> float:
    """Requests per second one standalone emulator process serves (its own core).

    A lean raw-socket client in this process keeps `connections` keep-alive connections busy
    with sendMessage, so the figure is the server's, not httpx's.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.emulator",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--no-limits",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.search(r"ready at http://([\d.]+):(\d+)", line)
        assert match, line
        host, port = match.group(1), int(match.group(2))
        async with EmulatorClient(f"http://{host}:{port}/_emulator") as control:
            person = await control.create_user("Load")
            await control.send_text(TOKEN, person["id"], "/start")
        fields = {"chat_id": person["id"], **(RICH if rich else {"text": "hello from bench"})}
        body = urlencode(fields).encode()
        request = (
            f"POST /bot{TOKEN}/sendMessage HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        counts: list[int] = []
        await _raw_client(host, port, request, time.perf_counter() + 0.3, [])
        started = time.perf_counter()
        stop = started + seconds
        await asyncio.gather(
            *(_raw_client(host, port, request, stop, counts) for _ in range(connections))
        )
        elapsed = time.perf_counter() - started
        return sum(counts) / elapsed
    finally:
        process.terminate()
        await process.wait()


async def main(quick: bool) -> dict[str, float]:
    """Run every measurement and print the figures."""
    scale = 10 if quick else 1
    figures = {
        "sendMessage/s via PTB Bot (sequential)": await send_with_ptb(2000 // scale),
        "sendMessage/s via httpx keep-alive (sequential)": await send_with_httpx(3000 // scale),
        "sendMessage/s via httpx keep-alive (8 concurrent)": await send_with_httpx(
            3000 // scale, 8
        ),
        "getUpdates round trips/s via PTB (inject + fetch)": await get_updates_round_trips(
            2000 // scale
        ),
        "server capacity, plain sendMessage/s (own process, raw client)": await server_capacity(
            0.5 if quick else 3.0
        ),
        "server capacity, HTML+keyboard sendMessage/s (own process)": await server_capacity(
            0.5 if quick else 3.0, rich=True
        ),
    }
    for name, value in figures.items():
        print(f"{value:10.0f}  {name}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
