"""Saving a finished turn durably: in PostgreSQL, or in the local spool when it is away.

The client hears that a turn ended only after this returns, so what it saw is recorded
somewhere that survives the process: `save_turn_durably` retries the database for a few
seconds, then spools the turn (conversations.turns.spool) and keeps replaying the spool in the
background until the database takes it.
"""

import asyncio
import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError

from conversations import dependencies, executors, services
from conversations.executors import in_post_stream_thread
from conversations.records import FinishedTurn
from conversations.turns import spool

logger = logging.getLogger(__name__)

SAVED, SPOOLED, UNSAVED = "saved", "spooled", "unsaved"
# How long a database that fails (refuses, errs) is retried before a turn is spooled.
SAVE_PATIENCE_SECONDS = 3.0
# A save that takes longer than this makes the process ask whether the database is there at
# all (dependencies.database_reachable); one that is merely slow is waited for, up to
# SAVE_LONGEST_WAIT_SECONDS.
SLOW_SAVE_SECONDS = 0.5
SAVE_LONGEST_WAIT_SECONDS = 30.0
# How often a process with spooled turns tries the database again.
REPLAY_EVERY_SECONDS = 5.0

_replaying: asyncio.Task | None = None


async def save_turn_durably(turn: FinishedTurn) -> str:
    """Save the turn in the database; when the database is down, spool it. Return SAVED,
    SPOOLED, or UNSAVED (the spool failed too: logged as critical).

    A client hears `done` once this returns, so it must not wait on a database that is gone:
    an attempt that fails is retried for SAVE_PATIENCE_SECONDS, and one that is slow is
    waited for only while the database answers a probe of its own. A database that is down
    is known within about two seconds, and the turn spooled then; the attempt goes on in its
    thread meanwhile, and should it succeed after all, replaying the spool writes nothing
    twice. A save that is merely slow (a burst of saves waiting for threads or connections)
    is never sent to the spool.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SAVE_PATIENCE_SECONDS
    longest = loop.time() + SAVE_LONGEST_WAIT_SECONDS
    for attempt in range(settings.TURN_SAVE_RETRIES + 1):
        saving = asyncio.ensure_future(in_post_stream_thread(services.save_finished_turn, turn))
        while not saving.done():
            await asyncio.wait([saving], timeout=SLOW_SAVE_SECONDS)
            if saving.done():
                break
            if loop.time() > longest or not await dependencies.database_reachable():
                logger.warning("The database does not answer: spooling turn %s", turn.request_id)
                saving.add_done_callback(_quiet)  # its outcome no longer matters here
                return await _spool(turn)
        try:
            saving.result()
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
    return await _spool(turn)


async def _spool(turn: FinishedTurn) -> str:
    try:
        # The spool's own threads: the post-stream ones may all be waiting for the database.
        path = await executors.run_in(executors.spool(), spool.spool_turn, turn)
    except Exception:
        logger.critical("Turn %s could neither be saved nor spooled", turn.request_id)
        return UNSAVED
    logger.warning("The database is away: turn %s is spooled in %s", turn.request_id, path)
    ensure_replaying()
    return SPOOLED


def _quiet(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned attempt's failure is no news


def replay_spooled_turns() -> spool.ReplayResult:
    """Replay every spooled turn into the database (blocking; see conversations.turns.spool)."""
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
