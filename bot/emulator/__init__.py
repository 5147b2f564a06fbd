"""A local Telegram Bot API emulator for moim's end-to-end tests, sandbox and benchmarks.

Start one in the running event loop with `server = EmulatorServer(Emulator(), port=0)` and
`await server.start()`, then give PTB `base_url=server.base_url`; or run it in its own
process with `python -m bot.emulator --port 8081 --token 123:ABC` and drive it with
`EmulatorClient(control_url)`.
"""

from bot.emulator.client import EmulatorClient
from bot.emulator.emulator import CallbackPress, Emulator
from bot.emulator.errors import ApiError, EmulatorError
from bot.emulator.limits import Faults, Limits
from bot.emulator.server import EmulatorApp, EmulatorServer, LocalServer

__all__ = [
    "ApiError",
    "CallbackPress",
    "Emulator",
    "EmulatorApp",
    "EmulatorClient",
    "EmulatorError",
    "EmulatorServer",
    "Faults",
    "Limits",
    "LocalServer",
]
