"""Turn event logs in Redis Streams, shared by every server process: one stream per turn.

Each event is a stream entry whose ID is `0-<event id>`: the event id *is* the entry's
sequence number, so there is no second counter to keep in step. Resuming after event N is
`XREAD … STREAMS key 0-N`, exact by construction. And XADD refuses an ID that is not above
the stream's last one, so a second writer for the same turn fails loudly (TurnLogConflict)
instead of interleaving its own numbering. (Redis's own time-based IDs would tell readers
nothing, hence ENGINEERING.md's advice to keep a counter in each entry; explicit IDs make
that counter the ID itself.) Nothing here trims by time, so an ID carrying no time is fine.

A batch is one round trip: one Lua script adds each event (XADD) and sets the expiry. A script
runs atomically, so readers never see half of a batch and two writers' batches cannot
interleave; when a second writer collides, its first refused XADD stops its batch with
Redis's error, reported as TurnLogConflict.

Bounds: XADD carries `MAXLEN ~ max_events` (approximate trimming drops whole stream nodes,
so a stream may hold up to one node, `stream-node-max-entries`, 100 by default, beyond the
cap); every append sets the key's expiry, `running_ttl_seconds` while the turn runs (a
crashed writer's log goes once it stops being refreshed) and `ttl_seconds` from the final
event on.

Readers check the stream's last entry once (missing: TurnLogNotFound; final and already
seen: done), then loop on `XREAD BLOCK block_seconds`. Each empty wake-up checks that the key
still exists, so a reader of an expired or deleted log stops instead of waiting forever.
A blocked reader holds one pooled connection for as long as it waits.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from conversations import redis_async
from conversations.eventlog.base import (
    EventLog,
    TurnEvent,
    TurnLogConflict,
    TurnLogNotFound,
    TurnWriter,
)

# The start of Redis's reply when an XADD's ID is not above the stream's last one.
_ID_TOO_SMALL = "equal or smaller"

# A batch of events appended: KEYS[1] the turn's stream; ARGV: the cap on its length, its
# expiry in milliseconds, then per event its entry ID, name, JSON data and final flag ("1" or
# ""). One script is one command on the wire and one reply (a MULTI of N XADDs was N + 3 of
# each, the main cost of a turn's appends), and it runs atomically, as the transaction did.
# An ID not above the stream's last stops the batch with Redis's error (a second writer).
_APPEND = """
for i = 3, #ARGV, 4 do
  if ARGV[i + 3] == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i],
      'name', ARGV[i + 1], 'data', ARGV[i + 2], 'final', '1')
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i],
      'name', ARGV[i + 1], 'data', ARGV[i + 2])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


# How long one XREAD waits for new events before it checks that the turn's log still exists
# (the clients' socket timeout is longer: redis_async.LONGEST_BLOCK_SECONDS).
DEFAULT_BLOCK_SECONDS = redis_async.LONGEST_BLOCK_SECONDS


class RedisEventLog(EventLog):
    """Keep each turn's events in a capped, expiring Redis stream."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "chatsite",
        ttl_seconds: float = 600,
        max_events: int = 10_000,
        running_ttl_seconds: float = 3600,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        read_count: int = 500,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.max_events = max_events
        self.running_ttl_seconds = running_ttl_seconds
        self.block_ms = max(1, round(block_seconds * 1000))
        self.read_count = read_count

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 500, **options: Any) -> "RedisEventLog":
        """Build a log on a new client for the Redis at `url` (see redis_async.new_client)."""
        return cls(redis_async.new_client(url, max_connections=max_connections), **options)

    def key(self, turn_key: str) -> str:
        """Return the Redis key of the turn's stream."""
        return f"{self.key_prefix}:turnlog:{turn_key}"

    def writer(self, turn_key: str) -> TurnWriter:
        return _RedisWriter(self, turn_key)

    async def exists(self, turn_key: str) -> bool:
        return bool(await self.client.exists(self.key(turn_key)))

    async def delete(self, turn_key: str) -> None:
        await self.client.delete(self.key(turn_key))

    async def length(self, turn_key: str) -> int:
        return await self.client.xlen(self.key(turn_key))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _follow(self, turn_key: str, after: int) -> AsyncIterator[TurnEvent]:
        key = self.key(turn_key)
        last = await self.client.xrevrange(key, "+", "-", count=1)
        if not last:
            raise TurnLogNotFound(f"No event log for turn {turn_key!r}.")
        top = _decode(*last[0])
        if top.final and top.id <= after:
            return
        while True:
            reply = await self.client.xread(
                {key: f"0-{after}"}, count=self.read_count, block=self.block_ms
            )
            if not reply:
                if not await self.client.exists(key):
                    raise TurnLogNotFound(f"The event log of turn {turn_key!r} went away.")
                continue
            for entry_id, fields in _entries(reply):
                event = _decode(entry_id, fields)
                yield event
                if event.final:
                    return
                after = event.id

    async def _store(self, turn_key: str, events: Sequence[TurnEvent]) -> None:
        ttl = self.ttl_seconds if events[-1].final else self.running_ttl_seconds
        args: list[Any] = [self.max_events, max(1, round(ttl * 1000))]
        for event in events:
            data = orjson.dumps(event.data)
            args += [f"0-{event.id}", event.name, data, b"1" if event.final else b""]
        try:
            await self.client.register_script(_APPEND)(keys=[self.key(turn_key)], args=args)
        except redis.ResponseError as exc:
            if _ID_TOO_SMALL in str(exc):
                raise TurnLogConflict(
                    f"Turn {turn_key!r} already holds event {events[0].id}: a second writer?"
                ) from exc
            raise


class _RedisWriter(TurnWriter):
    def __init__(self, log: RedisEventLog, turn_key: str) -> None:
        super().__init__(turn_key)
        self._log = log

    async def _store(self, events: list[TurnEvent]) -> None:
        await self._log._store(self.turn_key, events)


def _entries(reply: Any) -> list[tuple[Any, dict[Any, Any]]]:
    """Return the one stream's entries from an XREAD reply, as RESP2 or RESP3 shapes it."""
    if isinstance(reply, dict):  # RESP3: {key: [[entry, ...]]}
        (entries,) = reply.values()
        return entries[0]
    return reply[0][1]  # RESP2: [[key, [entry, ...]]]


def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> TurnEvent:
    """Turn a stream entry back into its event; works whether or not the client decodes."""
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    name = fields.get(b"name", fields.get("name"))
    return TurnEvent(
        id=int(entry_id.partition("-")[2]),
        name=name.decode() if isinstance(name, bytes) else name,
        data=orjson.loads(fields.get(b"data", fields.get("data"))),
        final=bool(fields.get(b"final", fields.get("final"))),
    )
