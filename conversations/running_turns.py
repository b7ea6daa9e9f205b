"""The turns this process runs, and the signals that reach them from any server process
through channels' channel layer: Stop, and readers attaching or leaving elsewhere.

A request can reach any process behind the load balancer, while the turn runs in one of
them. Each process keeps the turns it runs in a registry (readers of a local turn find it
here), and listens on one channel that it adds to a group every process shares. A signal is
sent to the group; the process that runs the turn acts on it, the others find nothing to do.
With REDIS_URL the layer is channels_redis, across processes; without it, the in-memory layer
serves the one process.

* `request_stop`: stop the turn (Stop).
* `signal_reader`: a reader in another process attached (+1) or left (-1), so that the
  turn's disconnect policy counts it like a reader of its own. A process that dies with
  readers attached never sends their -1: the turn then goes on, the safe side.
* a roll call from the admin's live view: each process answers with the turns it runs
  (conversations.live_turns).

The listener starts with the first turn a process runs, in the server's event loop, and
lives as long as the process (a strong reference keeps the task alive).
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from conversations import local_cache

if TYPE_CHECKING:
    from conversations.models import Message
    from conversations.streaming import TurnRun

logger = logging.getLogger(__name__)

GROUP = "chatsite.running-turns"
STOP = "turn.stop"
READER = "turn.reader"
ROLL_CALL = "turn.roll_call"
# Not about turns: drop a user's rows cached in each process (conversations.local_cache).
CACHE_FORGET = "cache.forget"

_running: dict[tuple[int, str], "TurnRun"] = {}
_listener: asyncio.Task | None = None
# Group membership expires in the layer (a day by default): renew it well before.
RENEW_GROUP_SECONDS = 3600


def register(run: "TurnRun") -> None:
    """Note a turn this process runs, so that a Stop from anywhere can reach it."""
    _running[(run.turn.user_id, run.turn.request_id)] = run
    _start_listener()


def unregister(run: "TurnRun") -> None:
    key = (run.turn.user_id, run.turn.request_id)
    if _running.get(key) is run:
        del _running[key]


def count() -> int:
    """How many turns this process runs now."""
    return len(_running)


def all_runs() -> list["TurnRun"]:
    """Every turn this process runs now."""
    return list(_running.values())


def find(*, user_id: int, request_id: str) -> "TurnRun | None":
    """Return the user's turn if this process runs it."""
    return _running.get((user_id, request_id))


def stop_here(*, user_id: int, request_id: str) -> bool:
    """Stop the user's turn if this process runs it; return whether it did."""
    run = find(user_id=user_id, request_id=request_id)
    if run is None:
        return False
    run.stop()
    return True


async def request_stop(*, user_id: int, request_id: str) -> None:
    """Ask whichever process runs the user's turn to stop it."""
    if stop_here(user_id=user_id, request_id=request_id):
        return
    await get_channel_layer().group_send(
        GROUP, {"type": STOP, "user_id": user_id, "request_id": request_id}
    )


async def stop_and_wait(answer: "Message", *, patience: float = 2.0) -> None:
    """Stop the answer's turn wherever it runs, and wait up to `patience` seconds for it to
    be saved as ended; `answer` is refreshed as the database then has it."""
    await request_stop(user_id=answer.user_id, request_id=answer.request_id)
    deadline = asyncio.get_running_loop().time() + patience
    while answer.status == answer.Status.STREAMING:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
        await answer.arefresh_from_db()


async def signal_reader(*, user_id: int, request_id: str, change: int) -> None:
    """Tell the process running the user's turn that a reader here attached (+1) or left
    (-1). Best effort: a failure is logged, and the turn's policy then counts only the
    readers it heard of."""
    try:
        await get_channel_layer().group_send(
            GROUP,
            {"type": READER, "user_id": user_id, "request_id": request_id, "change": change},
        )
    except Exception:
        logger.warning("Could not signal a reader of turn %s", request_id, exc_info=True)


def _receive(message: dict) -> None:
    if message.get("type") == CACHE_FORGET:
        return local_cache.receive_forget(message)
    if message.get("type") == ROLL_CALL:
        from conversations import live_turns  # it builds on this module

        live_turns.answer_roll_call(message)
        return
    run = find(user_id=message.get("user_id"), request_id=message.get("request_id"))
    if run is None:
        return
    if message.get("type") == STOP:
        run.stop()
    elif message.get("type") == READER:
        if message.get("change") == 1:
            run.attach()
        elif message.get("change") == -1:
            run.detach()


def start_listener() -> None:
    """Listen from the process's start (conversations.lifecycle), not only from its first
    turn: a staff roll call must reach a process before it runs anything."""
    _start_listener()


def _start_listener() -> None:
    global _listener
    if _listener is None or _listener.done():
        _listener = asyncio.get_running_loop().create_task(_listen(), name="running-turns")


async def _listen() -> None:
    """Receive signals for this process's turns until the process ends."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    renewing = asyncio.create_task(_renew_membership(layer, channel))
    try:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ConnectionError, RedisError) as exc:
                # A Redis hiccup (or a loop too busy to read in time) must not end the
                # listening for good.
                logger.warning("Receiving turn signals failed (%r); retrying in a second", exc)
                await asyncio.sleep(1)
                continue
            except Exception:
                logger.exception("Receiving turn signals failed; retrying in a second")
                await asyncio.sleep(1)
                continue
            _receive(message)
    finally:
        renewing.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(GROUP, channel))


async def _renew_membership(layer, channel: str) -> None:
    while True:
        await asyncio.sleep(RENEW_GROUP_SECONDS)
        with contextlib.suppress(Exception):
            await layer.group_add(GROUP, channel)
