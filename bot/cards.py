"""Live cards: when an item changes, its posted cards are edited — coalesced per chat.

A burst of 1,000 votes becomes a handful of edits: a changed item is only marked (in memory,
after its transaction committed); the refresher edits each of its cards at most once per
``delivery.card_edit_group_seconds`` in a group (Telegram allows 20 per minute) and
``card_edit_private_seconds`` in a private chat, always showing the latest state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ExtBot

from bot import telegram_io
from bot.db import transaction
from bot.runtime import CardRequest
from bot.services import cards

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


class CardRefresher:
    """Keeps posted cards up to date; one per process."""

    def __init__(self, runtime: Runtime, bot: ExtBot) -> None:
        self.runtime = runtime
        self.bot = bot
        self._dirty: set[tuple[str, int]] = set()
        self._next_edit: dict[tuple[int, int], float] = {}  # (chat, message) -> monotonic
        # The cards an item had when last looked up: while all of them must still wait, a
        # touch costs no database round (a burst of 10,000 signatures is 10,000 touches).
        # An item without cards is looked up again at most once a second.
        self._known: dict[tuple[str, int], tuple[float, list[tuple[int, int]]]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self.edits = 0

    def touch(self, kind: str, item_id: int) -> None:
        """The item changed: its cards should show it (soon, within the chats' limits)."""
        self._dirty.add((kind, item_id))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Items whose cards still wait for an edit."""
        return len(self._dirty)

    def stop(self) -> None:
        """Stop after the current round."""
        self._stopping = True
        self._wake.set()

    async def run_forever(self) -> None:
        """Refresh whenever something changed, paced per chat."""
        while not self._stopping:
            self._wake.clear()
            try:
                wait = await self.refresh_due()
            except Exception:
                log.exception("refreshing cards failed")
                wait = 1.0
            if self._stopping:
                break
            timeout = wait if self._dirty else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def refresh_due(self, *, force: bool = False) -> float:
        """Edit every card that may be edited now; returns seconds until the next one may."""
        runtime = self.runtime
        now = time.monotonic()
        soonest = float("inf")
        if len(self._next_edit) > 10_000:
            self._next_edit = {key: t for key, t in self._next_edit.items() if t > now}
            self._known = {key: cards for key, cards in self._known.items() if key in self._dirty}
        for kind, item_id in list(self._dirty):
            card_kind = runtime.features.cards.get(kind)
            if card_kind is None:
                self._dirty.discard((kind, item_id))
                continue
            looked_up, known = self._known.get((kind, item_id), (0.0, None))
            if known is not None and not force:
                pauses = [self._next_edit.get(key, 0) - now for key in known] or [
                    looked_up + 1.0 - now
                ]
                if min(pauses) > 0:
                    soonest = min(soonest, min(pauses))
                    continue
            async with transaction(runtime.sessions) as session:
                posted = await cards.of_item(session, kind, item_id)
                waiting = [
                    card
                    for card in posted
                    if not force and self._next_edit.get((card.chat_id, card.message_id), 0) > now
                ]
                ready = [card for card in posted if card not in waiting]
                rendered = {}
                for card in ready:
                    request = CardRequest(
                        session=session,
                        runtime=runtime,
                        item_id=item_id,
                        language=card.language,
                        chat_id=card.chat_id,
                        now=runtime.now(),
                    )
                    rendered[card.id] = await card_kind.render(request)
            self._known[(kind, item_id)] = (
                now,
                [(card.chat_id, card.message_id) for card in posted],
            )
            if not waiting:
                self._dirty.discard((kind, item_id))
            for card in waiting:
                soonest = min(soonest, self._next_edit[(card.chat_id, card.message_id)] - now)
            for card in ready:
                await self._edit(card, rendered[card.id], now)
        return max(0.05, soonest) if soonest != float("inf") else 1.0

    async def _edit(self, card, rendered, now: float) -> None:
        delivery = self.runtime.config.delivery
        pause = (
            delivery.card_edit_group_seconds
            if card.chat_id < 0
            else delivery.card_edit_private_seconds
        )
        self._next_edit[(card.chat_id, card.message_id)] = now + pause
        if rendered is None:
            return
        try:
            await telegram_io.edit(self.bot, card.chat_id, card.message_id, rendered)
            self.edits += 1
        except (Forbidden, BadRequest) as error:
            # Deleted message, removed bot, or too old to edit: stop trying this card.
            log.info("card %s/%s can no longer be edited: %s", card.kind, card.id, error)
            async with transaction(self.runtime.sessions) as session:
                await cards.forget_message(session, card.chat_id, card.message_id)
        except TelegramError as error:
            log.warning("editing card %s failed (%s); will retry", card.id, error)
            self._dirty.add((card.kind, card.item_id))
