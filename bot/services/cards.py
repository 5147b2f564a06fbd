"""Posted cards: where an item's card was sent, so changes can be shown there."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import PostedCard


async def remember(
    session: AsyncSession,
    *,
    kind: str,
    item_id: int,
    chat_id: int,
    message_id: int,
    language: str,
    posted_by: int | None,
    now: dt.datetime,
) -> PostedCard:
    """Record that a card of ``kind``/``item_id`` is message ``message_id`` in ``chat_id``."""
    card = PostedCard(
        kind=kind,
        item_id=item_id,
        chat_id=chat_id,
        message_id=message_id,
        language=language,
        posted_by=posted_by,
        posted_at=now,
    )
    session.add(card)
    await session.flush()
    return card


async def of_item(session: AsyncSession, kind: str, item_id: int) -> list[PostedCard]:
    """Every posted card of an item."""
    result = await session.exec(
        select(PostedCard)
        .where(PostedCard.kind == kind, PostedCard.item_id == item_id)
        .order_by(PostedCard.id)
    )
    return list(result.all())


async def forget_message(session: AsyncSession, chat_id: int, message_id: int) -> None:
    """The card's message is gone (deleted, or the chat left): stop editing it."""
    await session.exec(
        sa.delete(PostedCard).where(
            PostedCard.chat_id == chat_id, PostedCard.message_id == message_id
        )
    )


async def drop_chat(session: AsyncSession, chat_id: int) -> None:
    """The chat's messages cannot be edited any more (it became a supergroup, or we left)."""
    await session.exec(sa.delete(PostedCard).where(PostedCard.chat_id == chat_id))
