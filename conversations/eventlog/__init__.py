"""Per-turn event logs: a turn's numbered events, written by the task that owns the turn and
read, resumed and followed by any response, WebSocket or process.

`event_log()` returns this process's log: Redis Streams when REDIS_URL is set, else an
in-process one (single process, single event loop). See base.py for the contract and each
backend's module for how it keeps it.
"""

from functools import cache

from django.conf import settings

from conversations.eventlog.base import (
    EventLog,
    EventLogError,
    EventSpec,
    TurnEvent,
    TurnLogClosed,
    TurnLogConflict,
    TurnLogGap,
    TurnLogNotFound,
    TurnWriter,
)
from conversations.eventlog.memory import MemoryEventLog
from conversations.eventlog.redis_backend import RedisEventLog

__all__ = [
    "EventLog",
    "EventLogError",
    "EventSpec",
    "MemoryEventLog",
    "RedisEventLog",
    "TurnEvent",
    "TurnLogClosed",
    "TurnLogConflict",
    "TurnLogGap",
    "TurnLogNotFound",
    "TurnWriter",
    "event_log",
]


@cache
def event_log() -> EventLog:
    """Return this process's event log, built on first use from the settings.

    Use it from the server's event loop only: the Redis client's connections and the
    in-process log's wake-ups belong to the loop that first uses them.
    """
    options = {
        "ttl_seconds": settings.TURN_LOG_TTL_SECONDS,
        "max_events": settings.TURN_LOG_MAX_EVENTS,
        "running_ttl_seconds": settings.TURN_LOG_RUNNING_TTL_SECONDS,
    }
    url = settings.REDIS_URL
    if not url:
        return MemoryEventLog(**options)
    # The cache's prefix (CACHE_KEY_PREFIX), so one Redis can serve several sites.
    prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "chatsite"
    return RedisEventLog.from_url(url, key_prefix=prefix, **options)
