"""What a server process depends on, and whether it is there now: Redis and the database.

* **Redis** (with REDIS_URL) carries the limits, the leases, the event logs and the channel
  layer. A task started with the process (conversations.turns.lifecycle) pings it every
  REDIS_WATCH_SECONDS. While it does not answer, new answers are refused with a 503 and
  Retry-After before anything is counted or written (turn_starts), and `/health` says so;
  answers already running finish and are saved, and reach their readers in this process.
  A Redis failure met by a request itself counts too, so a request does not wait for the
  next ping to learn of it.
* **The database**: `database_reachable()` tells a database that is down from one that is
  merely slow, with a connection of its own outside the pool (a pool whose connections all
  wait says nothing about the server). The save before `done` asks it when a save takes
  long: a turn is spooled only when the database is down (conversations.turns.saving).
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from django.conf import settings
from django.db import connections

from conversations import redis_async
from conversations.exceptions import ServerBusy

logger = logging.getLogger(__name__)

REDIS_WATCH_SECONDS = 1.0
# A ping that takes longer than this counts as no answer.
REDIS_PING_TIMEOUT_SECONDS = 1.0
# How long a client refused while Redis is away is asked to wait.
REDIS_RETRY_AFTER = 5

_redis_down_since: float | None = None
_watching: asyncio.Task | None = None


def redis_down() -> bool:
    """Whether Redis did not answer lately (never so without REDIS_URL)."""
    return _redis_down_since is not None


def redis_status() -> str:
    """ "ok", "unreachable", or "none" without REDIS_URL (the embedded default)."""
    if not settings.REDIS_URL:
        return "none"
    return "unreachable" if redis_down() else "ok"


def note_redis_failure(exc: BaseException) -> None:
    """Record that a request met Redis failing; the watch notes its return."""
    global _redis_down_since
    if _redis_down_since is None:
        _redis_down_since = time.monotonic()
        logger.warning("Redis is unreachable (%r): new answers are refused until it is back", exc)


def _note_redis_answered() -> None:
    global _redis_down_since
    if _redis_down_since is not None:
        logger.warning("Redis is back after %.1f s", time.monotonic() - _redis_down_since)
        _redis_down_since = None


def redis_unreachable(exc: BaseException | None = None) -> ServerBusy:
    """The 503 for a new answer while Redis is away; `exc`, the failure met, if any."""
    if exc is not None:
        note_redis_failure(exc)
    wait = REDIS_RETRY_AFTER
    return ServerBusy(
        f"The server cannot start answers right now (its Redis is unreachable). "
        f"Try again in {wait} seconds.",
        headers={"Retry-After": str(wait)},
    )


def watch_redis() -> None:
    """Start pinging Redis from the process's event loop, once (with REDIS_URL)."""
    global _watching
    if settings.REDIS_URL and (_watching is None or _watching.done()):
        _watching = asyncio.get_running_loop().create_task(_watch(), name="redis-watch")


async def _watch() -> None:
    while True:
        try:
            async with asyncio.timeout(REDIS_PING_TIMEOUT_SECONDS):
                await redis_async.redis_client().ping()
        except Exception as exc:
            note_redis_failure(exc)
        else:
            _note_redis_answered()
        await asyncio.sleep(REDIS_WATCH_SECONDS)


# --- the database ---------------------------------------------------------------------------

# A probe's answer is reused this long, so that a burst of slow saves asks once.
DATABASE_PROBE_REUSE_SECONDS = 1.0
DATABASE_PROBE_TIMEOUT_SECONDS = 2

_probe: tuple[float, asyncio.Future[bool]] | None = None


@cache
def _probe_executor() -> ThreadPoolExecutor:
    # Not the post-stream threads: during an outage every one of them waits for the pool.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-probe")


async def database_reachable() -> bool:
    """Whether the database accepts a new connection and answers a query, within
    DATABASE_PROBE_TIMEOUT_SECONDS; one probe at a time, its answer reused for a second."""
    global _probe
    loop = asyncio.get_running_loop()
    if (
        _probe is None
        or _probe[1].get_loop() is not loop
        or loop.time() - _probe[0] > DATABASE_PROBE_REUSE_SECONDS
    ):
        _probe = (loop.time(), loop.run_in_executor(_probe_executor(), _connect_and_query))
    return await asyncio.shield(_probe[1])


def _connect_and_query() -> bool:
    connection = connections["default"]
    if connection.vendor != "postgresql":
        return True  # a local file: no server to lose
    import psycopg

    params = connection.get_connection_params()
    params["connect_timeout"] = DATABASE_PROBE_TIMEOUT_SECONDS
    try:
        with psycopg.connect(**params, autocommit=True) as probe:
            probe.execute("SELECT 1")
    except psycopg.Error as exc:
        logger.warning("The database does not answer: %s", exc)
        return False
    return True
