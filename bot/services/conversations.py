"""Multi-step flows, kept in the database so any instance (or a restarted one) continues them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from models import ConversationState

# A flow nobody touched for this long is forgotten (the person moved on).
EXPIRY = dt.timedelta(hours=24)


async def current(
    session: AsyncSession, *, chat_id: int, user_id: int, now: dt.datetime
) -> ConversationState | None:
    """The person's open flow in this chat, unless it has expired."""
    state = await session.get(ConversationState, (chat_id, user_id))
    if state is None:
        return None
    if now - state.updated_at > EXPIRY:
        await session.delete(state)
        return None
    return state


async def begin(
    session: AsyncSession,
    *,
    chat_id: int,
    user_id: int,
    flow: str,
    step: str,
    data: dict[str, Any] | None = None,
    now: dt.datetime,
) -> ConversationState:
    """Start (or restart) a flow for this person in this chat."""
    state = await session.get(ConversationState, (chat_id, user_id))
    if state is None:
        state = ConversationState(chat_id=chat_id, user_id=user_id, flow=flow, step=step)
    state.flow = flow
    state.step = step
    state.data = dict(data or {})
    state.updated_at = now
    session.add(state)
    await session.flush()
    return state


async def advance(
    session: AsyncSession,
    state: ConversationState,
    *,
    step: str,
    now: dt.datetime,
    **changes: Any,
) -> ConversationState:
    """Move the flow to ``step``, merging ``changes`` into its data."""
    state.step = step
    state.data = {**state.data, **changes}  # a new dict, so the JSON column sees the change
    state.updated_at = now
    session.add(state)
    await session.flush()
    return state


async def finish(session: AsyncSession, *, chat_id: int, user_id: int) -> bool:
    """End the person's flow in this chat; False if there was none."""
    result = await session.exec(
        delete(ConversationState).where(
            ConversationState.chat_id == chat_id, ConversationState.user_id == user_id
        )
    )
    return bool(result.rowcount)


async def forget_user(session: AsyncSession, user_id: int) -> None:
    """Drop every flow of a person (they deleted their data)."""
    await session.exec(delete(ConversationState).where(ConversationState.user_id == user_id))


async def prune(session: AsyncSession, *, now: dt.datetime) -> int:
    """Delete expired flows."""
    result = await session.exec(
        delete(ConversationState).where(ConversationState.updated_at < now - EXPIRY)
    )
    return result.rowcount or 0
