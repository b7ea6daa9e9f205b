"""This process's asyncio Redis client, for the work on a request's hot path (admission, stream
leases) and the event log: no worker thread, one pool.

A connection belongs to the event loop that opened it, so there is one client per loop: a
server has one loop; Django's test client and `async_to_sync` start one per call.
"""

import asyncio
import weakref

import redis.asyncio as redis
from django.conf import settings

# How long a reader's XREAD BLOCK waits (conversations.turns.eventlog.redis_backend); the
# socket must wait longer than that, or redis-py would time the read out.
LONGEST_BLOCK_SECONDS = 5.0
# A busy moment waits this long for a free pooled connection before failing.
POOL_TIMEOUT_SECONDS = 10.0

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.Redis]" = (
    weakref.WeakKeyDictionary()
)


def redis_client() -> redis.Redis:
    """The running loop's client for settings.REDIS_URL, built on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = new_client(settings.REDIS_URL)
    return client


def new_client(url: str, *, max_connections: int | None = None) -> redis.Redis:
    """A client whose pool makes a busy moment wait for a free connection: redis-py's default
    pool fails at once past 100 connections, which 300 concurrent answers reach."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections or settings.TURN_LOG_REDIS_CONNECTIONS,
        timeout=POOL_TIMEOUT_SECONDS,
        socket_timeout=LONGEST_BLOCK_SECONDS + 10,
    )
    return redis.Redis(connection_pool=pool)


def reset_redis_clients() -> None:
    """Forget the clients built so far, so that the next call reads the settings (tests)."""
    _clients.clear()
