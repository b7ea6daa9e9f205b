"""Turn event logs in Redis Streams, shared by every server process: one stream per turn.

Each event is a stream entry whose ID is `0-<event id>`: the event id *is* the entry's
sequence number, so there is no second counter to keep in step. Resuming after event N is
`XRANGE … (0-N +`, exact by construction. (Redis's own time-based IDs would tell readers
nothing, hence ENGINEERING.md's advice to keep a counter in each entry; explicit IDs make
that counter the ID itself.) Nothing here trims by time, so an ID carrying no time is fine.

A batch is one round trip: one Lua script adds each event (XADD) and sets the expiry. A script
runs atomically, so readers never see half of a batch and two writers' batches cannot
interleave. It first looks at the stream's last entry:

* the batch follows it: the batch is appended;
* the batch is already there, as the stream's last events: a retry after a lost reply,
  stored nothing twice;
* other events hold its IDs, or the stream has ended: a second writer (TurnLogConflict);
* the stream lacks events before the batch: Redis lost them, restarting without persistence
  (TurnLogBehind). The turn's runner, which keeps every event, writes them again from there.

Bounds: XADD carries `MAXLEN ~ max_events` (approximate trimming drops whole stream nodes,
so a stream may hold up to one node, `stream-node-max-entries`, 100 by default, beyond the
cap); every append sets the key's expiry, `running_ttl_seconds` while the turn runs (a
crashed writer's log goes once it stops being refreshed) and `ttl_seconds` from the final
event on. So a running log's remaining time to live tells how long ago it was last appended
to: `end_abandoned` leaves alone a log appended to lately.

Readers check the stream's last entry once (missing: TurnLogNotFound; final and already
seen: done), replay what is stored with XRANGE, then take new entries from the process's one
blocking XREAD (redis_tail.StreamTail): a waiting reader holds no connection.
"""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import redis.asyncio as redis

from conversations import redis_async
from conversations.turns.eventlog.base import (
    EventLog,
    LoggedEvent,
    TurnLogBehind,
    TurnLogConflict,
    TurnLogNotFound,
    TurnWriter,
)
from conversations.turns.eventlog.redis_tail import StreamTail

# Lua helpers: the last entry's event id (0 without one), and whether an entry is final.
_LAST = """
local function last_entry(key)
  local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #top == 0 then return 0, false end
  local fields, final = top[1][2], false
  for j = 1, #fields, 2 do
    if fields[j] == 'final' then final = true end
  end
  return tonumber(string.sub(top[1][1], 3)), final
end
"""

# A batch of events appended: KEYS[1] the turn's stream; ARGV: the cap on its length, its
# expiry in milliseconds, then per event its id, name, JSON data and final flag ("1" or "").
# Returns {1, last id} when the batch is stored (now, or by an earlier try), {0, last id} when
# the stream lacks events before it, and an error starting CONFLICT for a second writer.
_APPEND = (
    _LAST
    + """
local last, ended = last_entry(KEYS[1])
local first, count = tonumber(ARGV[3]), (#ARGV - 2) / 4
if first > last + 1 then
  return {0, last}
end
if first <= last then
  if first + count - 1 ~= last then
    return redis.error_reply('CONFLICT the log holds event ' .. first)
  end
  local held = redis.call('XRANGE', KEYS[1], '0-' .. first, '0-' .. last)
  if #held ~= count then
    return redis.error_reply('CONFLICT the log holds event ' .. first)
  end
  for i = 1, count do
    local fields, name, data = held[i][2], nil, nil
    for j = 1, #fields, 2 do
      if fields[j] == 'name' then name = fields[j + 1] end
      if fields[j] == 'data' then data = fields[j + 1] end
    end
    local a = 3 + (i - 1) * 4
    if name ~= ARGV[a + 1] or data ~= ARGV[a + 2] then
      return redis.error_reply('CONFLICT the log holds event ' .. first)
    end
  end
  return {1, last}
end
if ended then
  return redis.error_reply('CONFLICT the log has ended')
end
for i = 3, #ARGV, 4 do
  if ARGV[i + 3] == '1' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '0-' .. ARGV[i],
      'name', ARGV[i + 1], 'data', ARGV[i + 2], 'final', '1')
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '0-' .. ARGV[i],
      'name', ARGV[i + 1], 'data', ARGV[i + 2])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, first + count - 1}
"""
)

# A final event for a log whose writer is gone: KEYS[1] the stream; ARGV: name, JSON data,
# the finished log's expiry and the running one's (ms), the quiet time (ms), the cap. Only a
# log that exists, has not ended, and had no append for the quiet time. Returns 1 if appended.
_END_ABANDONED = (
    _LAST
    + """
local last, ended = last_entry(KEYS[1])
if last == 0 or ended then
  return 0
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 and tonumber(ARGV[4]) - pttl < tonumber(ARGV[5]) then
  return 0
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '0-' .. (last + 1),
  'name', ARGV[1], 'data', ARGV[2], 'final', '1')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)


# How long the tail's XREAD waits for new events before it checks that the logs it follows
# still exist (the clients' socket timeout is longer: redis_async.LONGEST_BLOCK_SECONDS).
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
        missing_grace_seconds: float = 10.0,
        patience_seconds: float = 30.0,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.max_events = max_events
        self.running_ttl_seconds = running_ttl_seconds
        self.read_count = read_count
        self._append = client.register_script(_APPEND)
        self._end_abandoned = client.register_script(_END_ABANDONED)
        self.tail = StreamTail(
            client,
            _decode,
            block_seconds=block_seconds,
            missing_grace_seconds=missing_grace_seconds,
            patience_seconds=patience_seconds,
            read_count=read_count,
        )

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

    async def end_abandoned(
        self, turn_key: str, name: str, data: dict[str, Any], *, quiet_seconds: float
    ) -> bool:
        ended = await self._end_abandoned(
            keys=[self.key(turn_key)],
            args=[
                name,
                orjson.dumps(data),
                _ms(self.ttl_seconds),
                _ms(self.running_ttl_seconds),
                _ms(quiet_seconds),
                self.max_events,
            ],
        )
        return bool(ended)

    async def aclose(self) -> None:
        await self.tail.aclose()
        await self.client.aclose()

    async def _follow(self, turn_key: str, after: int) -> AsyncIterator[LoggedEvent]:
        key = self.key(turn_key)
        last = await self.client.xrevrange(key, "+", "-", count=1)
        if not last:
            raise TurnLogNotFound(f"No event log for turn {turn_key!r}.")
        top = _decode(*last[0])
        if top.final and top.id <= after:
            return
        # Follow first, then replay: nothing appended in between is missed, and what both
        # hand over is read once (by its id).
        subscription = self.tail.subscribe(key, cursor=top.id)
        try:
            seen = after
            while seen < top.id:
                replayed = await self._range(key, seen, "+")
                if not replayed:
                    break
                for event in replayed:
                    yield event
                    if event.final:
                        return
                    seen = event.id
            while True:
                event = await subscription.get()
                if event.id <= seen:
                    continue
                if event.id > seen + 1:  # handed over after the tail began: fetch the rest
                    for missed in await self._range(key, seen, f"0-{event.id - 1}"):
                        yield missed
                        seen = missed.id
                yield event
                if event.final:
                    return
                seen = event.id
        finally:
            self.tail.unsubscribe(subscription)

    async def _range(self, key: str, after: int, end: str) -> list[LoggedEvent]:
        entries = await self.client.xrange(key, f"(0-{after}", end, count=self.read_count)
        return [_decode(entry_id, fields) for entry_id, fields in entries]

    async def _store(self, turn_key: str, events: Sequence[LoggedEvent]) -> None:
        ttl = self.ttl_seconds if events[-1].final else self.running_ttl_seconds
        args: list[Any] = [self.max_events, _ms(ttl)]
        for event in events:
            args += [event.id, event.name, orjson.dumps(event.data), b"1" if event.final else b""]
        try:
            stored, last_id = await self._append(keys=[self.key(turn_key)], args=args)
        except redis.ResponseError as exc:
            if str(exc).startswith("CONFLICT"):
                raise TurnLogConflict(f"Turn {turn_key!r}: {exc} (a second writer?)") from exc
            raise
        if not stored:
            raise TurnLogBehind(
                f"Turn {turn_key!r}: the log holds events up to {last_id} only.",
                last_id=int(last_id),
            )


class _RedisWriter(TurnWriter):
    def __init__(self, log: RedisEventLog, turn_key: str) -> None:
        super().__init__(turn_key)
        self._log = log

    async def _store(self, events: list[LoggedEvent]) -> None:
        await self._log._store(self.turn_key, events)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _decode(entry_id: bytes | str, fields: dict[Any, Any]) -> LoggedEvent:
    """Turn a stream entry back into its event; works whether or not the client decodes."""
    entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    name = fields.get(b"name", fields.get("name"))
    return LoggedEvent(
        id=int(entry_id.partition("-")[2]),
        name=name.decode() if isinstance(name, bytes) else name,
        data=orjson.loads(fields.get(b"data", fields.get("data"))),
        final=bool(fields.get(b"final", fields.get("final"))),
    )
