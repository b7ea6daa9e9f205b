"""Messages between server processes, over channels' channel layer, in lanes of their own.

Every process listens on one channel per lane, in a group that all processes join; a message
sent to a lane reaches every process, and the handlers registered for its `type` act on it
(`handle`). A handler is a plain function: it must not wait on anything.

* CONTROL carries what must land: Stop, a user's rows to forget (a key revoked, an account
  changed: conversations.accounts.local_cache), staff's roll call (conversations.turns.live).
* READERS carries readers attaching and leaving in other processes: chatty, and a lost one
  only makes a turn count the readers it heard of.

The lanes are separate channel layers (the aliases in settings.CHANNEL_LAYERS), so each has
its own Redis key, receive loop and capacity: channels_redis keeps all the process-local
channels of one layer in one sorted set with one capacity (100 by default), and a flood of
reader signals filled it and dropped Stops and revocations behind them ("4 of 4 channels over
capacity" 12,111 times in an audit). The control lane is given capacity to spare.

A listener joins its group again every RENEW_SECONDS and at once after a failed receive: a
Redis that restarted without persistence forgets every group, and a process that has not
joined again hears nothing.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lane:
    alias: str  # the channel layer (settings.CHANNEL_LAYERS)
    group: str  # the group every process's listener joins


CONTROL = Lane("control", "chatsite.control")
READERS = Lane("readers", "chatsite.readers")
LANES = (CONTROL, READERS)

# How often a listener joins its group again (a group lost with a Redis restart is back
# within this), and how long a send may take before it is given up.
RENEW_SECONDS = 5.0
SEND_TIMEOUT_SECONDS = 2.0

Handler = Callable[[dict[str, Any]], None]
_handlers: dict[str, list[Handler]] = {}
_listeners: dict[Lane, asyncio.Task] = {}


def handle(message_type: str) -> Callable[[Handler], Handler]:
    """Register a handler for messages of `message_type`, in whichever lane they come."""

    def register(handler: Handler) -> Handler:
        handlers = _handlers.setdefault(message_type, [])
        if handler not in handlers:
            handlers.append(handler)
        return handler

    return register


async def send(lane: Lane, message: dict[str, Any]) -> None:
    """Send `message` to every process's listener of `lane`; raise if it cannot be sent
    within SEND_TIMEOUT_SECONDS."""
    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
        await get_channel_layer(lane.alias).group_send(lane.group, message)


def start() -> None:
    """Listen on every lane from the running event loop, unless this process does already."""
    loop = asyncio.get_running_loop()
    for lane in LANES:
        task = _listeners.get(lane)
        # A task of another loop (a test's, now closed) will never run again.
        if task is None or task.done() or task.get_loop() is not loop:
            _listeners[lane] = loop.create_task(_listen(lane), name=f"bus-{lane.alias}")


def dispatch(message: dict[str, Any]) -> None:
    """Hand a message to the handlers of its type; one that fails is logged."""
    for handler in _handlers.get(message.get("type"), ()):
        try:
            handler(message)
        except Exception:
            logger.exception("Handling a %s message failed", message.get("type"))


async def _listen(lane: Lane) -> None:
    layer = get_channel_layer(lane.alias)
    channel = await layer.new_channel()
    renewing = asyncio.create_task(_keep_joining(layer, lane.group, channel))
    failures = 0
    try:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis away or restarted: keep trying, and join again once it answers.
                failures += 1
                if failures == 1:
                    logger.warning(
                        "Receiving on the %s lane failed (%r); retrying", lane.alias, exc
                    )
                await asyncio.sleep(min(1.0, 0.1 * failures))
                with contextlib.suppress(Exception):
                    await layer.group_add(lane.group, channel)
                continue
            if failures:
                logger.warning("Receiving on the %s lane again", lane.alias)
                failures = 0
            dispatch(message)
    finally:
        renewing.cancel()
        with contextlib.suppress(Exception):
            await asyncio.shield(layer.group_discard(lane.group, channel))


async def _keep_joining(layer, group: str, channel: str) -> None:
    while True:
        try:
            await layer.group_add(group, channel)
        except Exception as exc:
            logger.debug("Joining %s failed (%r); trying again", group, exc)
        await asyncio.sleep(RENEW_SECONDS)
