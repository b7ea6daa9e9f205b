"""The answers being written right now, in every server process, told to staff as they go:
a roll call and progress notices over channels' channel layer, never the database.

Each process knows the turns it runs (running_turns' registry). A staff reader (the admin's
live view, conversations.admin.live) takes a channel of its own in the layer, then

1. joins STAFF_GROUP, to which every process sends a notice when one of its turns starts
   and when it ends, and, while it runs any, one message a second with the progress of all
   of them (a heartbeat too: a turn that stops being mentioned lost its process);
2. sends a roll call on the bus's control lane, where every process listens; each answers,
   to the reader's channel, with the turns in its registry.

Joining before the roll call means a turn that starts meanwhile is not missed; a roll-call
answer or progress that arrives after the turn's end notice is ignored (`LiveRoll`).

    staff reader ──group_add──▶ STAFF_GROUP ◀── started / progress / ended ── every process
         │                                                                        ▲
         └──roll call──▶ bus.CONTROL ──────────▶ each listener ── its turns ──────┘ (to the
                                                                     reader's channel)

Processes send notices only while some reader watches: a roll call makes them talk for
WATCHED_SECONDS, and readers call it again every ROLL_CALL_EVERY_SECONDS. A site nobody
watches sends nothing. While watched, the runner's hot path still pays nothing per chunk: a
start and an end notice per turn, sent by a task of their own, and one progress message a
second per process. With REDIS_URL the layer
is channels_redis, across processes; without it, the in-memory layer serves the one process.
A notice that cannot be sent is logged and dropped: staff then see the turn late (at the
next progress message) or not at all, and the turn itself is never touched.
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channels.layers import get_channel_layer

from conversations import bus
from conversations.turns import registry

if TYPE_CHECKING:
    from conversations.turns.runner import TurnRun

logger = logging.getLogger(__name__)

STAFF_GROUP = "chatsite.live-turns"
ROLL_CALL = "turn.roll_call"  # staff ask every process for the turns it runs
TURNS = "live.turns"  # these turns run in this process now: a start, progress, a roll call
ENDED = "live.ended"  # this turn ended, with this status
# How often a process tells staff how its turns are going; and how long a turn may go
# unmentioned before a reader drops it (its process died without saying it ended).
PROGRESS_SECONDS = 1.0
STALE_SECONDS = 10.0
# How long a reader remembers an ended turn, to ignore notices of it still in flight.
ENDED_MEMORY_SECONDS = 60.0
# A roll call makes every process send notices for this long; readers call it again well
# before, so that processes stop talking soon after the last reader goes.
WATCHED_SECONDS = 30.0
ROLL_CALL_EVERY_SECONDS = 10.0

_tasks: set[asyncio.Task] = set()
_progress: asyncio.Task | None = None
_watched_until = 0.0  # time.monotonic() until which this process sends notices


def process_name() -> str:
    """Which server process this is, as staff read it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def summary(run: "TurnRun") -> dict[str, Any]:
    """What staff see of a running turn: no text, only who, what and how far."""
    turn = run.turn
    return {
        "key": f"{turn.user_id}:{turn.request_id}",
        "user_id": turn.user_id,
        "request_id": turn.request_id,
        "message_id": turn.assistant_message_id,
        "conversation_id": turn.conversation_id,
        "title": turn.conversation_title,
        "model": turn.model.key,
        "tokens": run.accumulator.counted_completion_tokens,
        "elapsed": round(time.monotonic() - run.accumulator.started, 1),
        "process": process_name(),
    }


# --- the runner's side: cheap, fire-and-forget ------------------------------------------


def watched() -> bool:
    """Whether a staff reader has called the roll lately: only then do turns send notices,
    so that a busy site nobody watches pays nothing (300 answers starting at once would
    otherwise send 300 notices at once, and exhaust the layer's Redis connections)."""
    return time.monotonic() < _watched_until


def turn_started(run: "TurnRun") -> None:
    """Tell staff readers a turn started here, and keep them posted while turns run."""
    if watched():
        _send_soon(STAFF_GROUP, {"type": TURNS, "turns": [summary(run)]})
        _ensure_progress()


def turn_ended(run: "TurnRun") -> None:
    """Tell staff readers a turn that ran here ended, and how."""
    if watched():
        key = f"{run.turn.user_id}:{run.turn.request_id}"
        _send_soon(STAFF_GROUP, {"type": ENDED, "key": key, "status": run.status})


@bus.handle(ROLL_CALL)
def answer_roll_call(message: dict[str, Any]) -> None:
    """Answer a staff reader's roll call (the bus brought it) with the turns this process
    runs now, and keep staff posted for WATCHED_SECONDS."""
    global _watched_until
    reply_to = message.get("reply_to")
    if not isinstance(reply_to, str):
        return
    _watched_until = time.monotonic() + WATCHED_SECONDS
    turns = [summary(run) for run in registry.all_runs() if run.status is None]
    _send_soon(reply_to, {"type": TURNS, "turns": turns}, group=False)
    if turns:
        _ensure_progress()


def _send_soon(target: str, message: dict[str, Any], *, group: bool = True) -> None:
    task = asyncio.get_running_loop().create_task(_send(target, message, group=group))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _send(target: str, message: dict[str, Any], *, group: bool) -> None:
    layer = get_channel_layer()
    try:
        if group:
            await layer.group_send(target, message)
        else:
            await layer.send(target, message)
    except Exception:
        logger.warning("Could not tell staff about running turns (%s)", target, exc_info=True)


async def _call_the_roll(roll_call: dict[str, Any]) -> None:
    try:
        await bus.send(bus.CONTROL, roll_call)
    except Exception:
        logger.warning("Could not call the roll of running turns", exc_info=True)


def _ensure_progress() -> None:
    global _progress
    loop = asyncio.get_running_loop()
    # A task of another loop (a test's, now closed) will never run again.
    if _progress is None or _progress.done() or _progress.get_loop() is not loop:
        _progress = loop.create_task(_progress_while_running(), name="live-turns-progress")


async def _progress_while_running() -> None:
    """Every PROGRESS_SECONDS, one message with every running turn's progress; the task
    ends when no turn runs here, or no staff reader watches (the next start or roll call
    begins it again)."""
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        runs = [run for run in registry.all_runs() if run.status is None]
        if not runs or not watched():
            return
        await _send(STAFF_GROUP, {"type": TURNS, "turns": [summary(r) for r in runs]}, group=True)


# --- the staff reader's side -------------------------------------------------------------


@dataclass
class LiveRoll:
    """A reader's view of the running turns, from the notices it receives, in order.

    `apply` and `expire` return what changed, as ("turn", summary) for a turn that is new
    or has new tokens, and ("ended", {"key", "status"}) for one that is gone.
    """

    turns: dict[str, dict[str, Any]] = field(default_factory=dict)
    heard: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)

    def apply(self, message: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any]]]:
        changes: list[tuple[str, dict[str, Any]]] = []
        if message.get("type") == TURNS:
            for turn in message.get("turns", []):
                key = turn["key"]
                if key in self.ended:
                    continue  # news sent before its end, arriving after it
                known = self.turns.get(key)
                self.turns[key], self.heard[key] = turn, now
                if known is None or known["tokens"] != turn["tokens"]:
                    changes.append(("turn", turn))
        elif message.get("type") == ENDED:
            key = message["key"]
            self.ended[key] = now
            self.heard.pop(key, None)
            if self.turns.pop(key, None) is not None:
                changes.append(("ended", {"key": key, "status": message.get("status")}))
        return changes

    def expire(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """Drop the turns no process has mentioned for STALE_SECONDS: their process is gone
        (the sweep of conversations.turns.lifecycle marks such answers interrupted)."""
        changes: list[tuple[str, dict[str, Any]]] = []
        for key, heard in list(self.heard.items()):
            if now - heard > STALE_SECONDS:
                del self.heard[key], self.turns[key]
                self.ended[key] = now
                changes.append(("ended", {"key": key, "status": None}))
        for key, ended in list(self.ended.items()):
            if now - ended > ENDED_MEMORY_SECONDS:
                del self.ended[key]
        return changes


async def follow_running_turns(
    *, keepalive_seconds: float
) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Yield the changes to the running turns of every process, in batches: first what the
    roll call finds, then as turns start, progress and end; an empty batch after
    `keepalive_seconds` without news. Runs until the caller stops reading."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(STAFF_GROUP, channel)
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    receiving = asyncio.get_running_loop().create_task(_receive_into(layer, channel, inbox))
    roll = LiveRoll()
    roll_call = {"type": ROLL_CALL, "reply_to": channel}
    try:
        await bus.send(bus.CONTROL, roll_call)
        called = time.monotonic()
        while True:
            if time.monotonic() - called > ROLL_CALL_EVERY_SECONDS:
                # Keep every process posting notices while this reader watches.
                await _call_the_roll(roll_call)
                called = time.monotonic()
            try:
                async with asyncio.timeout(keepalive_seconds):
                    messages = [await inbox.get()]
            except TimeoutError:
                messages = []
            while not inbox.empty():
                messages.append(inbox.get_nowait())
            now = time.monotonic()
            changes = [c for m in messages for c in roll.apply(m, now)] + roll.expire(now)
            yield changes
    finally:
        receiving.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(STAFF_GROUP, channel))


async def _receive_into(layer, channel: str, inbox: asyncio.Queue) -> None:
    """Move what arrives on the reader's channel into its inbox; a layer hiccup is retried
    (the next progress message brings the reader up to date)."""
    while True:
        try:
            inbox.put_nowait(await layer.receive(channel))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("Receiving running-turn notices failed; retrying", exc_info=True)
            await asyncio.sleep(1)
