"""Stop a running turn from any server process, through channels' channel layer.

Each process also finds its running turns here, for readers that re-attach (turn_readers).

A Stop request can reach any process behind the load balancer, while the turn runs in one of
them. Each process keeps the turns it runs in a registry, and listens on one channel that it
adds to a group every process shares; `request_stop` sends to the group, and the process that
runs the turn stops it (the others find nothing to stop). With REDIS_URL the layer is
channels_redis, across processes; without it, the in-memory layer serves the one process.

The listener starts with the first turn a process runs, in the server's event loop, and
lives as long as the process (a strong reference keeps the task alive).
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer

if TYPE_CHECKING:
    from conversations.streaming import TurnRun

logger = logging.getLogger(__name__)

GROUP = "chatsite.turn-stops"
MESSAGE_TYPE = "turn.stop"

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


def find(*, user_id: int, request_id: str) -> "TurnRun | None":
    """Return the user's turn if this process runs it."""
    return _running.get((user_id, request_id))


def stop_here(*, user_id: int, request_id: str) -> bool:
    """Stop the user's turn if this process runs it; return whether it did."""
    run = _running.get((user_id, request_id))
    if run is None:
        return False
    run.stop()
    return True


async def request_stop(*, user_id: int, request_id: str) -> None:
    """Ask whichever process runs the user's turn to stop it."""
    if stop_here(user_id=user_id, request_id=request_id):
        return
    await get_channel_layer().group_send(
        GROUP, {"type": MESSAGE_TYPE, "user_id": user_id, "request_id": request_id}
    )


def _start_listener() -> None:
    global _listener
    if _listener is None or _listener.done():
        _listener = asyncio.get_running_loop().create_task(_listen(), name="turn-stops")


async def _listen() -> None:
    """Receive Stop requests for this process's turns until the process ends."""
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
            except Exception:  # a Redis hiccup must not end the listening for good
                logger.exception("Receiving Stop requests failed; retrying in a second")
                await asyncio.sleep(1)
                continue
            if message.get("type") == MESSAGE_TYPE:
                stop_here(user_id=message["user_id"], request_id=message["request_id"])
    finally:
        renewing.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(GROUP, channel))


async def _renew_membership(layer, channel: str) -> None:
    while True:
        await asyncio.sleep(RENEW_GROUP_SECONDS)
        with contextlib.suppress(Exception):
            await layer.group_add(GROUP, channel)
