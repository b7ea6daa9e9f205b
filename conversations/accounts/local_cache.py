"""Short-lived copies, in this process, of per-user rows read on every request (an API key's
owner, say), so that a request needs neither a query nor a thread hop for them.

A copy lives PROCESS_CACHE_SECONDS at most. A change must not wait that long: whatever changes
such a row calls `forget_user`, which drops the user's copies here at once and, once the
transaction commits, tells every server process on the bus's control lane (conversations.bus;
`receive_forget` handles it). Should that notice be lost, the lifetime bounds how long a copy
stays stale. Other handlers of the same notice act on the user's change too (the WebSocket
checks its user's sockets: conversations.web.consumers).

Without Redis the channel layer is in memory and no other process (a management command, a
second server) could be told: PROCESS_CACHE_SECONDS is then 0 by default, and nothing is kept.
"""

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, NamedTuple

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction

from conversations import bus

logger = logging.getLogger(__name__)

# Per cache: the oldest copies go first beyond it.
MAX_ENTRIES = 10_000


class _Copy(NamedTuple):
    expires_at: float
    value: Any
    user_id: int


_caches: list["ProcessCache"] = []
# Copies are read on the event loop and forgotten from worker threads too.
_lock = threading.Lock()
# How many forgets this process has had. A row read before a forget may predate the change it
# announces: `put` refuses to keep it (see there).
_forgets = 0
_sending: set[asyncio.Task] = set()


class ProcessCache:
    """This process's copies of one kind of per-user row; one per kind, created at import."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._copies: OrderedDict[Hashable, _Copy] = OrderedDict()
        # The forget count when get() last missed each key: what put() checks.
        self._misses: OrderedDict[Hashable, int] = OrderedDict()
        _caches.append(self)

    def __repr__(self) -> str:
        return f"<ProcessCache {self.name}: {len(self._copies)} copies>"

    def get(self, key: Hashable) -> Any | None:
        """Return the copy kept under `key`, or None when there is none or it expired."""
        if settings.PROCESS_CACHE_SECONDS <= 0:
            return None
        with _lock:
            found = self._copies.get(key)
            if found is not None:
                if found.expires_at > time.monotonic():
                    return found.value
                del self._copies[key]
            self._misses[key] = _forgets
            self._misses.move_to_end(key)
            _trim(self._misses)
        return None

    def put(self, key: Hashable, value: Any, *, user_id: int) -> None:
        """Keep `value`, a row of user `user_id` read after get(key) missed, under `key`.

        It is not kept when any user was forgotten since that miss: the row may have been read
        before the change that the forget announced, and would then outlive it. Forgets are
        rare (revocations, account changes), so this costs little.
        """
        seconds = settings.PROCESS_CACHE_SECONDS
        if seconds <= 0:
            return
        with _lock:
            if self._misses.pop(key, None) != _forgets:
                return
            self._copies[key] = _Copy(time.monotonic() + seconds, value, user_id)
            self._copies.move_to_end(key)
            _trim(self._copies)

    def _drop_user(self, user_id: int) -> None:
        # A scan: forgets are rare, and it keeps each cache one dictionary.
        for key in [key for key, found in self._copies.items() if found.user_id == user_id]:
            del self._copies[key]


def _trim(entries: OrderedDict) -> None:
    while len(entries) > MAX_ENTRIES:
        entries.popitem(last=False)


def _drop(user_id: int) -> None:
    global _forgets
    with _lock:
        _forgets += 1
        for cache in _caches:
            cache._drop_user(user_id)


def forget_user(user_id: int) -> None:
    """Drop the user's copies from every process: here now, elsewhere once the current
    transaction commits (at once outside one). For sync code that changed the user's rows."""
    _drop(user_id)
    transaction.on_commit(lambda: _announce(user_id))


async def aforget_user(user_id: int) -> None:
    """Drop the user's copies from every process, from async code (which has no transaction)."""
    _drop(user_id)
    await _send_notice(user_id)


# A user's rows changed: a key revoked, the account changed, their limits changed.
USER_CHANGED = "user.changed"


@bus.handle(USER_CHANGED)
def receive_forget(message: dict) -> None:
    """Drop the copies a notice from any process names (it came over the bus)."""
    user_id = message.get("user_id")
    if isinstance(user_id, int):
        _drop(user_id)


def _announce(user_id: int) -> None:
    # Again here: a request of this process may have read the row before the commit.
    _drop(user_id)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(_send_notice)(user_id)  # the usual case: sync code in a worker thread
        return
    task = loop.create_task(_send_notice(user_id))
    _sending.add(task)
    task.add_done_callback(_sending.discard)


async def _send_notice(user_id: int) -> None:
    """Tell every process (this one too) to forget the user. Never raises: a notice that does
    not go out is logged, and the copies expire with their lifetime."""
    try:
        await bus.send(bus.CONTROL, {"type": USER_CHANGED, "user_id": user_id})
    except Exception:
        logger.warning(
            "Could not tell other processes to forget user %s's cached rows; they expire in %s s",
            user_id,
            settings.PROCESS_CACHE_SECONDS,
            exc_info=True,
        )
