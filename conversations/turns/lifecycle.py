"""A server process's life: what it does once it starts, while it runs, and when told to stop.

* At start-up (the first request or connection the process serves) and every minute after:
  replay the spool of turns saved while the database was away, then mark the answers whose
  process died (a stale heartbeat) as interrupted. The spool goes first, so that a turn that
  ended well is never marked interrupted for good.
* On SIGTERM (a deploy, a restart): drain. New turns are refused with a 503 and Retry-After
  (and the health check says "draining"), running ones may finish for SHUTDOWN_GRACE_SECONDS,
  the rest are then ended as interrupted: their partial text saved, their readers told the
  server is restarting, their leases released. Only then does the server's own shutdown
  (daphne's, or any ASGI server's SIGTERM handler) proceed. A second SIGTERM skips the wait.

Nothing here runs under the test client or management commands: chatsite.asgi starts it.
"""

import asyncio
import logging
import signal
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from conversations import bus, dependencies, services
from conversations.exceptions import ProviderError
from conversations.executors import in_post_stream_thread
from conversations.models import Message
from conversations.turns import registry, saving, spool
from conversations.turns.eventlog import event_log
from conversations.turns.events import Failed
from conversations.turns.runner import turn_key

logger = logging.getLogger(__name__)

# What the readers of an answer whose server process died are told.
SERVER_STOPPED_MESSAGE = (
    "The server writing this answer stopped. What it had written is saved; send your message again."
)
# How long a refused client is asked to wait while this process drains.
DRAINING_RETRY_AFTER = 5
# After the grace period: how long the interrupted turns get to save, and their readers to
# write the final event, before the server's own shutdown goes on.
SAVE_WAIT_SECONDS = 10.0
FLUSH_WAIT_SECONDS = 0.5
MAINTENANCE_EVERY_SECONDS = 60.0

_started = False
_draining = False
_tasks: set[asyncio.Task] = set()


def is_draining() -> bool:
    """Whether this process is shutting down and refuses new turns."""
    return _draining


def start() -> None:
    """Begin the process's background work and take over SIGTERM; once, from the server's
    event loop."""
    global _started
    if _started:
        return
    _started = True
    loop = asyncio.get_running_loop()
    _spawn(loop, _maintain())
    bus.start()  # a staff roll call must reach a process before it runs anything
    dependencies.watch_redis()
    try:
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(
            signal.SIGTERM,
            lambda signum, frame: loop.call_soon_threadsafe(_on_sigterm, previous),
        )
    except ValueError:  # not the main thread (an embedded server): leave signals alone
        logger.info("Not in the main thread: SIGTERM is left to the server")


def _spawn(loop: asyncio.AbstractEventLoop, coroutine) -> None:
    task = loop.create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


# --- maintenance ----------------------------------------------------------------------


async def _maintain() -> None:
    every = min(MAINTENANCE_EVERY_SECONDS, settings.TURN_HEARTBEAT_STALE_SECONDS / 2)
    while True:
        try:
            closed = await in_post_stream_thread(_maintenance_pass, _own_answer_ids())
            await end_logs_of_interrupted(closed)
        except Exception:
            logger.warning("Turn maintenance failed; trying again later", exc_info=True)
        await asyncio.sleep(every)


def _own_answer_ids() -> list[int]:
    return [run.turn.assistant_message_id for run in registry.all_runs()]


def _maintenance_pass(own_answer_ids: list[int]) -> list[Message]:
    if spool.pending_files():
        saving.replay_spooled_turns()
    stale_before = timezone.now() - timedelta(seconds=settings.TURN_HEARTBEAT_STALE_SECONDS)
    closed = services.turns_close_interrupted(stale_before=stale_before, exclude_ids=own_answer_ids)
    if closed:
        logger.warning("Marked %d answer(s) whose server stopped as interrupted", len(closed))
    return closed


async def end_logs_of_interrupted(answers: list[Message]) -> int:
    """Give the logs of answers whose server died their final event, so that their readers,
    in any process, end (an `error`, status interrupted) instead of waiting without end; a
    log appended to lately is left alone (its writer lives). Return how many ended."""
    ended = 0
    for answer in answers:
        ending = Failed.of(
            ProviderError(SERVER_STOPPED_MESSAGE, status=503),
            status=Message.Status.INTERRUPTED,
            record=saving.SAVED,
        )
        try:
            ended += await event_log().end_abandoned(
                turn_key(answer.user_id, answer.request_id),
                *ending.spec(),
                quiet_seconds=settings.TURN_HEARTBEAT_STALE_SECONDS,
            )
        except Exception:
            logger.warning("Could not end the log of %s", answer.request_id, exc_info=True)
    return ended


# --- shutdown ---------------------------------------------------------------------------


def _on_sigterm(previous) -> None:
    global _draining
    if _draining:
        logger.warning("Second SIGTERM: shutting down without waiting")
        _hand_over(previous)
        return
    _draining = True
    logger.warning(
        "SIGTERM: refusing new answers; %d running may finish within %g s",
        registry.count(),
        settings.SHUTDOWN_GRACE_SECONDS,
    )
    _spawn(asyncio.get_running_loop(), _drain(previous))


async def _drain(previous) -> None:
    try:
        await drain_running_turns(settings.SHUTDOWN_GRACE_SECONDS)
    finally:
        _hand_over(previous)


async def drain_running_turns(grace_seconds: float) -> None:
    """Let this process's turns finish for `grace_seconds`, then interrupt the rest and
    wait for their saves and their readers' last event."""
    # No turn starts meanwhile: new ones are refused while the process drains.
    if running := registry.all_runs():
        await asyncio.wait(
            [asyncio.ensure_future(run.wait_saved()) for run in running], timeout=grace_seconds
        )
    runs = registry.all_runs()
    for run in runs:
        run.interrupt()
    if runs:
        logger.warning("Grace period over: %d answer(s) interrupted", len(runs))
        await asyncio.wait(
            [asyncio.ensure_future(run.wait_saved()) for run in runs], timeout=SAVE_WAIT_SECONDS
        )
    if running:  # their readers write the final event; with none, a restart need not wait
        await asyncio.sleep(FLUSH_WAIT_SECONDS)


def _hand_over(previous) -> None:
    """Let the server's own SIGTERM handling shut it down."""
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signal.SIGTERM, None)
    elif previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGTERM)
