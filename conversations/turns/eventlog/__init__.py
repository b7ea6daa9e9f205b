"""Per-turn event logs: a turn's numbered events, written by the task that owns the turn and
read, resumed and followed by any response, WebSocket or process.

`event_log()` returns this process's log: Redis Streams when REDIS_URL is set, else an
in-process one (single process, single event loop). See base.py for the contract and each
backend's module for how it keeps it.
"""

import asyncio
import weakref

from django.conf import settings

from conversations import redis_async
from conversations.turns.eventlog.base import (
    EventLog,
    EventLogError,
    EventSpec,
    LoggedEvent,
    TurnLogBehind,
    TurnLogClosed,
    TurnLogConflict,
    TurnLogGap,
    TurnLogNotFound,
    TurnLogUnavailable,
    TurnWriter,
)
from conversations.turns.eventlog.memory import MemoryEventLog
from conversations.turns.eventlog.redis_backend import RedisEventLog

__all__ = [
    "EventLog",
    "EventLogError",
    "EventSpec",
    "LoggedEvent",
    "MemoryEventLog",
    "RedisEventLog",
    "TurnLogBehind",
    "TurnLogClosed",
    "TurnLogConflict",
    "TurnLogGap",
    "TurnLogNotFound",
    "TurnLogUnavailable",
    "TurnWriter",
    "event_log",
    "reset_event_log",
]


# The Redis client's connections belong to the event loop that opened them: one log per loop
# (a server has one; Django's test client starts one per request). The in-process log is one
# per process, since its turns must be seen by every reader.
_redis_logs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventLog]" = (
    weakref.WeakKeyDictionary()
)
_outside_loop: dict[str, EventLog] = {}


def event_log() -> EventLog:
    """Return this process's event log (for the running event loop), built on first use from
    the settings: Redis Streams with REDIS_URL, else in process."""
    if not settings.REDIS_URL:
        if "memory" not in _outside_loop:
            _outside_loop["memory"] = MemoryEventLog(**_options())
        return _outside_loop["memory"]
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _outside_loop.setdefault("redis", _redis_log())
    log = _redis_logs.get(loop)
    if log is None:
        # The loop's shared client (conversations.redis_async): admission and leases use it too.
        log = _redis_logs[loop] = RedisEventLog(
            redis_async.redis_client(), key_prefix=_key_prefix(), **_options()
        )
    return log


def reset_event_log() -> None:
    """Forget the logs built so far, so that the next call reads the settings again (tests)."""
    _redis_logs.clear()
    _outside_loop.clear()
    redis_async.reset_redis_clients()


def _options() -> dict[str, int]:
    return {
        "ttl_seconds": settings.TURN_LOG_TTL_SECONDS,
        "max_events": settings.TURN_LOG_MAX_EVENTS,
        "running_ttl_seconds": settings.TURN_LOG_RUNNING_TTL_SECONDS,
    }


def _key_prefix() -> str:
    # The cache's prefix (CACHE_KEY_PREFIX), so one Redis can serve several sites.
    return settings.CACHES.get("default", {}).get("KEY_PREFIX") or "chatsite"


def _redis_log() -> "RedisEventLog":
    return RedisEventLog.from_url(
        settings.REDIS_URL,
        key_prefix=_key_prefix(),
        max_connections=settings.TURN_LOG_REDIS_CONNECTIONS,
        **_options(),
    )
