"""Saving a finished turn durably: in PostgreSQL, or in the local spool when it is away.

The client hears that a turn ended only after this returns, so what it saw is recorded
somewhere that survives the process: `save_turn_durably` retries the database for a few
seconds, then spools the turn (conversations.spool) and keeps replaying the spool in the
background until the database takes it.
"""

import asyncio
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError

from conversations import services, spool
from conversations.hooks import in_post_stream_thread
from conversations.turns import FinishedTurn

logger = logging.getLogger(__name__)

SAVED, SPOOLED, UNSAVED = "saved", "spooled", "unsaved"
# How long a failing database is retried before a turn is spooled instead.
SAVE_PATIENCE_SECONDS = 5.0
# How often a process with spooled turns tries the database again.
REPLAY_EVERY_SECONDS = 5.0

_replaying: asyncio.Task | None = None


async def save_turn_durably(turn: FinishedTurn) -> str:
    """Save the turn in the database, retrying while it fails for up to
    SAVE_PATIENCE_SECONDS; failing that, spool it. Return SAVED, SPOOLED, or UNSAVED (the
    spool failed too: logged as critical).

    Only the database failing sends a turn to the spool, never a save that is merely slow (a
    burst of saves waiting for threads or connections): an attempt is never cut short. An
    unreachable database fails an attempt within the pool's timeout (DATABASE_POOL_TIMEOUT).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAVE_PATIENCE_SECONDS
    for attempt in range(settings.TURN_SAVE_RETRIES + 1):
        try:
            await in_post_stream_thread(services.save_finished_turn, turn)
            return SAVED
        except (OperationalError, InterfaceError):
            logger.warning("Saving turn %s failed (attempt %d)", turn.request_id, attempt + 1)
            pause = min(0.25 * 2**attempt, deadline - loop.time())
            if pause <= 0:
                break
            await asyncio.sleep(pause)
        except Exception:
            logger.exception("Saving turn %s failed unexpectedly", turn.request_id)
            break
    try:
        path = await in_post_stream_thread(spool.spool_turn, turn)
    except Exception:
        logger.critical("Turn %s could neither be saved nor spooled", turn.request_id)
        return UNSAVED
    logger.warning("The database is away: turn %s is spooled in %s", turn.request_id, path)
    ensure_replaying()
    return SPOOLED


def replay_spooled_turns() -> spool.ReplayResult:
    """Replay every spooled turn into the database (blocking; see conversations.spool)."""
    return spool.replay_spool(services.save_finished_turn)


def ensure_replaying() -> None:
    """Replay the spool every few seconds in the background until it is empty."""
    global _replaying
    if _replaying is None or _replaying.done():
        _replaying = asyncio.get_running_loop().create_task(_replay_until_empty())


async def _replay_until_empty() -> None:
    while True:
        await asyncio.sleep(REPLAY_EVERY_SECONDS)
        try:
            result = await in_post_stream_thread(replay_spooled_turns)
        except Exception:
            logger.warning("Replaying the spool failed; trying again", exc_info=True)
            continue
        if not result.remaining and not spool.pending_files():
            return
