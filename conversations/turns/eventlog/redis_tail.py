"""One blocking XREAD per process for every reader of a turn whose log is in Redis.

A reader of a turn that another process runs follows the turn's Redis stream. Were each
reader to block in XREAD on a connection of its own, one user opening hundreds of readers
would hold every pooled connection, and admission, leases and appends (which share the pool)
would wait behind them: an audit's 530 readers of one user made every other user's calls
time out. So a process has one tail per log: a task that blocks in one XREAD, on one
connection, for every stream its readers follow, and hands each new entry to the readers of
that stream. A reader replays what came before it from the pool, briefly (XRANGE), and takes
the rest from the tail; however many readers there are, they hold no connection while they
wait.

* A new stream wakes the tail's XREAD (CLIENT UNBLOCK), so that it is followed at once.
* Every `check_seconds` the tail checks that its streams still exist: a reader of a log that
  expired or was deleted learns so (TurnLogNotFound) instead of waiting forever. Just after a
  reconnection a missing stream gets `missing_grace_seconds` first: a Redis that restarted
  without persistence lost every stream, and their writers put them back (TurnLogBehind).
* While Redis is unreachable the tail retries with a back-off, and its readers wait (their
  responses send keep-alives). Should it stay away for `patience_seconds`, every reader is
  told the log is unavailable (TurnLogUnavailable), so that no reader waits without end.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from conversations.turns.eventlog.base import (
    EventLogError,
    LoggedEvent,
    TurnLogNotFound,
    TurnLogUnavailable,
)

logger = logging.getLogger(__name__)

Decode = Callable[[Any, Any], LoggedEvent]


class Subscription:
    """What the tail hands one reader: the new events of its stream, or the error that ends
    its reading."""

    __slots__ = ("key", "queue")

    def __init__(self, key: str) -> None:
        self.key = key
        self.queue: asyncio.Queue[LoggedEvent | EventLogError] = asyncio.Queue()

    async def get(self) -> LoggedEvent:
        item = await self.queue.get()
        if isinstance(item, EventLogError):
            raise item
        return item


class _Stream:
    __slots__ = ("cursor", "missing_since", "readers")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor  # the last event id the tail has read from this stream
        self.readers: set[Subscription] = set()
        self.missing_since: float | None = None


class StreamTail:
    """Follow many Redis streams with one blocking XREAD, for the readers of this process."""

    def __init__(
        self,
        client: redis.Redis,
        decode: Decode,
        *,
        block_seconds: float,
        check_seconds: float | None = None,
        missing_grace_seconds: float = 10.0,
        patience_seconds: float = 30.0,
        read_count: int = 500,
        linger_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self._decode = decode
        self.block_ms = max(1, round(block_seconds * 1000))
        self.check_seconds = block_seconds if check_seconds is None else check_seconds
        self.missing_grace_seconds = missing_grace_seconds
        self.patience_seconds = patience_seconds
        self.read_count = read_count
        self.linger_seconds = linger_seconds
        self._streams: dict[str, _Stream] = {}
        self._wanted = asyncio.Event()  # a stream was added while the tail had none
        self._task: asyncio.Task | None = None
        self._waking: asyncio.Task | None = None
        # The streams change (a generation), and the XREAD in flight was built at one.
        self._generation = 0
        self._reading: int | None = None
        self._connection_id: int | None = None
        self._down_since: float | None = None
        self._reconnected_at = float("-inf")

    def following(self) -> int:
        """How many streams the tail follows now."""
        return len(self._streams)

    def subscribe(self, key: str, *, cursor: int) -> Subscription:
        """Follow `key` for a new reader, from after event `cursor` if the tail did not
        follow it yet (the reader replays anything before what the tail hands it)."""
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(cursor)
            self._generation += 1
            self._wake()
        subscription = Subscription(key)
        stream.readers.add(subscription)
        self._wanted.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="turnlog-tail")
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop handing events to this reader; a stream nobody reads is no longer followed."""
        stream = self._streams.get(subscription.key)
        if stream is None:
            return
        stream.readers.discard(subscription)
        if not stream.readers:
            del self._streams[subscription.key]

    async def aclose(self) -> None:
        for task in (self._task, self._waking):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        connection = self._client.client()  # one connection of the pool, for the tail alone
        failures = 0
        loop = asyncio.get_running_loop()
        checked_at = loop.time()
        try:
            while self._streams or await self._more_to_follow():
                try:
                    if self._connection_id is None:
                        self._connection_id = int(await connection.client_id())
                    if failures:
                        self._recovered(loop.time())
                        failures = 0
                    await self._read(connection)
                    if loop.time() - checked_at >= self.check_seconds:
                        checked_at = loop.time()
                        await self._check_streams(connection, checked_at)
                except (redis.RedisError, OSError) as exc:
                    self._reading = self._connection_id = None
                    failures += 1
                    self._unreachable(exc, loop.time())
                    await asyncio.sleep(min(2.0, 0.05 * 2**failures))
        finally:
            # Forgotten before the await: a reader subscribing meanwhile starts a new task.
            if self._task is asyncio.current_task():
                self._task = None
            # So is a failure that outlived every reader: a later tail's patience is its own.
            self._down_since = None
            await connection.aclose()

    async def _more_to_follow(self) -> bool:
        """With nothing to follow, wait a while for a new reader before the tail gives its
        connection back: readers that come and go do not start a tail (and a connection)
        each time."""
        self._wanted.clear()
        try:
            async with asyncio.timeout(self.linger_seconds):
                await self._wanted.wait()
        except TimeoutError:
            return bool(self._streams)
        return True

    async def _read(self, connection: redis.Redis) -> None:
        streams = {key: f"0-{stream.cursor}" for key, stream in self._streams.items()}
        if not streams:
            return  # the reader that woke the tail has left already (it only replayed)
        self._reading = self._generation
        try:
            reply = await connection.xread(streams, count=self.read_count, block=self.block_ms)
        finally:
            self._reading = None
        for key, entries in _by_stream(reply):
            stream = self._streams.get(key)
            if stream is None:
                continue  # its last reader left while the read was out
            for entry_id, fields in entries:
                event = self._decode(entry_id, fields)
                stream.cursor = event.id
                for subscription in stream.readers:
                    subscription.queue.put_nowait(event)

    async def _check_streams(self, connection: redis.Redis, now: float) -> None:
        keys = list(self._streams)
        async with connection.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.exists(key)
            found = await pipe.execute()
        # A Redis that restarted lost every stream; their writers put them back shortly.
        grace = self.missing_grace_seconds if now - self._reconnected_at < 60 else 0.0
        for key, exists in zip(keys, found, strict=True):
            stream = self._streams.get(key)
            if stream is None:
                continue
            if exists:
                stream.missing_since = None
                continue
            stream.missing_since = stream.missing_since or now
            if now - stream.missing_since >= grace:
                self._end_stream(key, TurnLogNotFound(f"The event log {key!r} went away."))

    def _unreachable(self, exc: BaseException, now: float) -> None:
        if self._down_since is None:
            self._down_since = now
            logger.warning("Following turn logs failed (%r); retrying", exc)
        elif now - self._down_since >= self.patience_seconds:
            logger.error(
                "Redis unreachable for %.0f s: %d log reader(s) given up",
                now - self._down_since,
                sum(len(s.readers) for s in self._streams.values()),
            )
            for key in list(self._streams):
                self._end_stream(
                    key, TurnLogUnavailable("The turn's events cannot be read right now.")
                )

    def _recovered(self, now: float) -> None:
        if self._down_since is not None:
            logger.warning("Following turn logs again after %.1f s", now - self._down_since)
        self._down_since = None
        self._reconnected_at = now

    def _end_stream(self, key: str, error: EventLogError) -> None:
        stream = self._streams.pop(key, None)
        if stream is not None:
            for subscription in stream.readers:
                subscription.queue.put_nowait(error)

    # --- waking the XREAD in flight ---------------------------------------------------------------

    def _wake(self) -> None:
        if self._reading is not None and (self._waking is None or self._waking.done()):
            self._waking = asyncio.get_running_loop().create_task(self._unblock())

    async def _unblock(self) -> None:
        """Unblock the XREAD in flight if it was built before the streams changed, so that
        the next one follows them. CLIENT UNBLOCK may arrive before the XREAD it is meant
        for: it is then tried again, briefly."""
        for _ in range(20):
            reading, connection_id = self._reading, self._connection_id
            if reading is None or reading >= self._generation or connection_id is None:
                return
            try:
                if await self._client.client_unblock(connection_id):
                    return
            except (redis.RedisError, OSError):
                return  # the read itself fails too, and the next one follows every stream
            await asyncio.sleep(0.005)


def _by_stream(reply: Any) -> list[tuple[str, list]]:
    """Return (key, entries) for each stream in an XREAD reply, as RESP2 or RESP3 shapes it."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {key: [[entry, ...]]}
        pairs = [(key, value[0]) for key, value in reply.items()]
    else:  # RESP2: [[key, [entry, ...]], ...]
        pairs = [(key, entries) for key, entries in reply]
    return [(key.decode() if isinstance(key, bytes) else key, entries) for key, entries in pairs]
