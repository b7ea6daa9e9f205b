"""The per-turn event log, run against both backends: in-process, and the real Redis.

The Redis backend uses `redis://127.0.0.1:6379/0` under a key prefix of this run's own, and
deletes every key under it afterwards. Coroutines run under `asyncio.run` with a deadline,
so a reader that never ends fails its test instead of hanging the suite.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any

import pytest
import redis
import redis.asyncio
from django.test.utils import override_settings

from conversations.turns.eventlog import (
    EventLog,
    LoggedEvent,
    MemoryEventLog,
    RedisEventLog,
    TurnLogBehind,
    TurnLogClosed,
    TurnLogConflict,
    TurnLogGap,
    TurnLogNotFound,
    event_log,
    reset_event_log,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
PREFIX = f"eventlog-test-{uuid.uuid4().hex[:12]}"


class CountingConnection(redis.asyncio.Connection):
    """A connection that counts its writes to the socket: one per round trip."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        await super().send_packed_command(command, check_health)


def stored_keys(pattern: str) -> list[bytes]:
    """Return the keys in Redis that match `pattern` (only keys of this run are asked for)."""
    with redis.Redis.from_url(REDIS_URL) as client:
        return list(client.scan_iter(match=pattern, count=1000))


@pytest.fixture(scope="module", autouse=True)
def delete_test_keys() -> Iterator[None]:
    yield
    if keys := stored_keys(f"{PREFIX}:*"):
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(*keys)


Scenario = Callable[[EventLog], Awaitable[Any]]


def run_with(kind: str, scenario: Scenario, **options: Any) -> Any:
    """Run `scenario` on a fresh log of this kind, in a loop of its own, within 10 seconds."""
    options.setdefault("block_seconds", 0.1)

    async def main() -> Any:
        if kind == "memory":
            log: EventLog = MemoryEventLog(**options)
        else:
            client = redis.asyncio.Redis.from_url(REDIS_URL, connection_class=CountingConnection)
            log = RedisEventLog(client, key_prefix=PREFIX, **options)
        try:
            async with asyncio.timeout(10):
                return await scenario(log)
        finally:
            await log.aclose()

    return asyncio.run(main())


@pytest.fixture(params=["memory", "redis"])
def run(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return lambda scenario, **options: run_with(request.param, scenario, **options)


def new_turn() -> str:
    return uuid.uuid4().hex


def deltas(count: int, start: int = 0) -> list[tuple[str, dict[str, Any]]]:
    return [("delta", {"text": f"t{i}"}) for i in range(start, start + count)]


async def read_all(log: EventLog, turn: str, after: int = 0) -> list[LoggedEvent]:
    return [event async for event in log.read(turn, after=after)]


def ids(events: list[LoggedEvent]) -> list[int]:
    return [event.id for event in events]


class Collector:
    """Read a turn into a list that the test can wait on, event by event."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self._grew = asyncio.Condition()

    async def read(self, log: EventLog, turn: str, after: int = 0) -> list[LoggedEvent]:
        async for event in log.read(turn, after=after):
            async with self._grew:
                self.events.append(event)
                self._grew.notify_all()
        return self.events

    async def wait_for(self, count: int) -> None:
        async with self._grew:
            await self._grew.wait_for(lambda: len(self.events) >= count)


def test_ids_are_consecutive_from_one_across_batches(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        assert await writer.append([("start", {"model": "m"})]) == 1
        assert await writer.append([("reasoning", {"text": "hm"}), ("delta", {"text": "é"})]) == 3
        assert await writer.append([*deltas(2), ("done", {"usage": {"n": 1}})], final=True) == 6
        events = await read_all(log, turn)
        assert ids(events) == [1, 2, 3, 4, 5, 6]
        assert [e.name for e in events] == ["start", "reasoning", "delta", "delta", "delta", "done"]
        assert events[2].data == {"text": "é"} and events[5].data == {"usage": {"n": 1}}
        assert [e.final for e in events] == [False] * 5 + [True]

    run(scenario)


def test_an_append_of_many_events_is_one_round_trip_to_redis() -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {})])  # opens the connection, with its handshake
        before = CountingConnection.sends
        assert await writer.append(deltas(50)) == 51
        assert CountingConnection.sends - before == 1
        assert await log.length(turn) == 51

    run_with("redis", scenario)


def test_a_reader_started_mid_turn_replays_then_follows_to_the_final_event(
    run: Callable[..., Any],
) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {}), *deltas(2)])
        reader = Collector()
        task = asyncio.create_task(reader.read(log, turn))
        await reader.wait_for(3)  # the stored events, replayed
        await writer.append(deltas(2, start=2))
        await reader.wait_for(5)  # live ones, as they come
        assert not task.done()
        await writer.append([("done", {})], final=True)
        seen = await task
        assert ids(seen) == [1, 2, 3, 4, 5, 6] and seen[-1].name == "done"

    run(scenario)


def test_a_reader_resuming_after_event_n_gets_exactly_the_events_after_it(
    run: Callable[..., Any],
) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {}), *deltas(4)])
        first: list[LoggedEvent] = []
        async with aclosing(log.read(turn)) as events:
            async for event in events:
                first.append(event)
                if event.id == 4:
                    break  # the connection drops after event 4
        await writer.append(deltas(3, start=4))
        resumed = Collector()
        task = asyncio.create_task(resumed.read(log, turn, after=first[-1].id))
        await resumed.wait_for(3)  # the stored events after 4, then it follows live
        await writer.append([*deltas(2, start=7), ("done", {})], final=True)
        rest = await task
        assert ids(rest) == list(range(5, 12))
        assert first + rest == await read_all(log, turn)

    run(scenario)


def test_the_redis_log_reads_the_same_over_resp3() -> None:
    async def scenario() -> list[LoggedEvent]:
        client = redis.asyncio.Redis.from_url(REDIS_URL, protocol=3)
        log = RedisEventLog(client, key_prefix=PREFIX, block_seconds=0.1)
        try:
            turn = new_turn()
            writer = log.writer(turn)
            await writer.append([("start", {}), *deltas(2)])
            reader = asyncio.create_task(read_all(log, turn, after=1))
            await asyncio.sleep(0.05)
            await writer.append([("done", {"ok": True})], final=True)
            return await reader
        finally:
            await log.aclose()

    events = asyncio.run(scenario())
    assert ids(events) == [2, 3, 4] and events[-1] == LoggedEvent(4, "done", {"ok": True}, True)


def test_a_reader_resuming_after_the_final_event_ends_at_once(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        await log.writer(turn).append([("start", {}), ("done", {})], final=True)
        assert await read_all(log, turn, after=2) == []
        assert ids(await read_all(log, turn, after=1)) == [2]

    run(scenario)


def test_concurrent_readers_all_see_every_event(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {})])
        readers = [asyncio.create_task(read_all(log, turn)) for _ in range(6)]
        for i in range(20):
            await writer.append(deltas(3, start=3 * i))
            await asyncio.sleep(0)
        await writer.append([("done", {})], final=True)
        results = await asyncio.gather(*readers)
        for events in results:
            assert ids(events) == list(range(1, 63))
            assert events == results[0]

    run(scenario)


def test_appending_after_the_final_event_raises(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        writer = log.writer(new_turn())
        await writer.append([("done", {})], final=True)
        with pytest.raises(TurnLogClosed):
            await writer.append(deltas(1))
        with pytest.raises(TurnLogClosed):
            await writer.append([("done", {})], final=True)
        assert writer.last_id == 1

    run(scenario)


def test_an_empty_append_is_refused(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        with pytest.raises(ValueError):
            await log.writer(new_turn()).append([])

    run(scenario)


def test_a_second_writer_for_the_same_turn_is_refused(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        await log.writer(turn).append([("start", {}), *deltas(2)])
        with pytest.raises(TurnLogConflict):
            await log.writer(turn).append([("start", {})])

    run(scenario)


def test_a_finished_log_is_gone_after_its_ttl(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> str:
        turn = new_turn()
        await log.writer(turn).append([("start", {}), ("done", {})], final=True)
        assert await log.exists(turn)
        await asyncio.sleep(1.2)
        assert not await log.exists(turn)
        with pytest.raises(TurnLogNotFound):
            await read_all(log, turn)
        return turn

    turn = run(scenario, ttl_seconds=1)
    assert not stored_keys(f"{PREFIX}:*{turn}*")


def test_no_finished_log_is_held_after_a_thousand_turns_and_their_ttl(
    run: Callable[..., Any],
) -> None:
    batch = new_turn()

    async def scenario(log: EventLog) -> None:
        turns = [f"{batch}-{i}" for i in range(1000)]

        async def one_turn(turn: str) -> None:
            writer = log.writer(turn)
            await writer.append([("start", {}), *deltas(2)])
            await writer.append([("done", {})], final=True)

        for i in range(0, len(turns), 25):  # 25 at a time, as a busy server would run them
            await asyncio.gather(*(one_turn(turn) for turn in turns[i : i + 25]))
        await asyncio.sleep(0.3)
        assert not any([await log.exists(turn) for turn in turns[:: len(turns) // 10]])
        if isinstance(log, MemoryEventLog):
            assert log.held() == 0

    run(scenario, ttl_seconds=0.2)
    assert not stored_keys(f"{PREFIX}:*{batch}*")


def test_a_running_log_expires_when_its_writer_stops_appending(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {})])
        await asyncio.sleep(1.0)
        await writer.append(deltas(1))  # refreshes the expiry
        # 3.1 s after the first append, 2.1 s after the second: here only if it refreshed.
        # (Seconds, not tenths: a busy machine stretched a 0.2 s sleep past a 0.3 s expiry.)
        await asyncio.sleep(2.1)
        assert await log.exists(turn)
        # The writer crashed: a reader following the turn learns it is gone.
        with pytest.raises(TurnLogNotFound):
            await read_all(log, turn)

    run(scenario, running_ttl_seconds=3)


def test_the_cap_bounds_a_log_and_a_reader_behind_it_learns_of_the_gap(
    run: Callable[..., Any],
) -> None:
    async def scenario(log: EventLog) -> int:
        turn = new_turn()
        writer = log.writer(turn)
        for i in range(100):
            await writer.append(deltas(10, start=10 * i), final=i == 99)
        with pytest.raises(TurnLogGap):
            await read_all(log, turn)
        assert ids(await read_all(log, turn, after=990)) == list(range(991, 1001))
        return await log.length(turn)

    length = run(scenario, max_events=200)
    # Redis trims whole stream nodes (`MAXLEN ~`): the log may exceed its cap by one node.
    with redis.Redis.from_url(REDIS_URL) as client:
        node = int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    assert 200 <= length <= 200 + node


def test_reading_an_unknown_turn_raises_not_found(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        assert not await log.exists("no-such-turn")
        with pytest.raises(TurnLogNotFound):
            await read_all(log, "no-such-turn")

    run(scenario)


def test_deleting_a_turn_stops_its_readers(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        await log.writer(turn).append([("start", {})])
        reader = asyncio.create_task(read_all(log, turn))
        await asyncio.sleep(0.05)
        await log.delete(turn)
        with pytest.raises(TurnLogNotFound):
            await reader
        assert not await log.exists(turn)

    run(scenario)


def test_a_reader_cancelled_while_waiting_leaves_the_log_usable(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {})])
        waiting = Collector()
        task = asyncio.create_task(waiting.read(log, turn))
        await waiting.wait_for(1)
        await asyncio.sleep(0.02)  # now blocked, waiting for event 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.append([("done", {})], final=True)
        assert ids(await read_all(log, turn)) == [1, 2]

    run(scenario)


def test_a_waiting_redis_reader_blocks_instead_of_polling() -> None:
    async def scenario(log: EventLog) -> int:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {})])
        reader = asyncio.create_task(read_all(log, turn))
        await asyncio.sleep(0.05)
        before = CountingConnection.sends
        await asyncio.sleep(0.6)
        sends = CountingConnection.sends - before
        await writer.append([("done", {})], final=True)
        assert ids(await reader) == [1, 2]
        return sends

    # One XREAD BLOCK and one EXISTS per quarter-second wait: a busy loop would send hundreds.
    assert run_with("redis", scenario, block_seconds=0.25) <= 8


def test_event_log_is_in_process_without_redis_and_built_once() -> None:
    reset_event_log()
    try:
        with override_settings(REDIS_URL="", TURN_LOG_TTL_SECONDS=5):
            log = event_log()
            assert isinstance(log, MemoryEventLog) and log.ttl_seconds == 5
            assert event_log() is log
    finally:
        reset_event_log()


def test_event_log_uses_redis_under_the_cache_key_prefix_when_redis_url_is_set() -> None:
    reset_event_log()
    caches = {"default": {"BACKEND": "x", "KEY_PREFIX": "site-a"}}
    try:
        with override_settings(REDIS_URL=REDIS_URL, CACHES=caches, TURN_LOG_MAX_EVENTS=50):
            log = event_log()
            assert isinstance(log, RedisEventLog) and log.max_events == 50
            assert log.key("t1") == "site-a:turnlog:t1"
    finally:
        reset_event_log()


# Failing safe ------------------------------------------------------------------------------


def test_an_append_retried_after_a_lost_reply_stores_nothing_twice(run: Callable[..., Any]) -> None:
    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {}), *deltas(2)])
        # The reply to the next append was lost: the writer, not knowing, sends it again.
        batch = deltas(2, start=2)
        stored = await writer.append(batch)
        writer.last_id -= 2
        assert await writer.append(batch) == stored == 5
        assert ids(await read_all_until(log, turn, 5)) == [1, 2, 3, 4, 5]

    run(scenario)


async def read_all_until(log: EventLog, turn: str, last: int) -> list[LoggedEvent]:
    events = []
    async with aclosing(log.read(turn)) as reading:
        async for event in reading:
            events.append(event)
            if event.id == last:
                return events
    return events


def test_a_log_that_lost_its_events_makes_the_writer_rewind_to_what_it_holds(
    run: Callable[..., Any],
) -> None:
    """A Redis restarted without persistence lost the stream: the writer learns where the log
    stands (TurnLogBehind) and writes again from there, so a reader from the start misses
    nothing."""

    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        events = [("start", {}), *deltas(3)]
        await writer.append(events)
        await log.delete(turn)  # as the restart does
        with pytest.raises(TurnLogBehind) as behind:
            await writer.append(deltas(1, start=3))
        assert behind.value.last_id == 0 and writer.last_id == 0
        await writer.append([*events, *deltas(1, start=3), ("done", {})], final=True)
        assert ids(await read_all(log, turn)) == [1, 2, 3, 4, 5, 6]

    run(scenario)


def test_an_abandoned_log_gets_a_final_event_once_it_has_been_quiet(
    run: Callable[..., Any],
) -> None:
    async def scenario(log: EventLog) -> None:
        turn, ended = new_turn(), new_turn()
        await log.writer(turn).append([("start", {}), *deltas(2)])
        await log.writer(ended).append([("start", {}), ("done", {})], final=True)
        final = {"status": "interrupted"}
        # Appended to just now: its writer may well live.
        assert not await log.end_abandoned(turn, "error", final, quiet_seconds=0.2)
        reader = asyncio.create_task(read_all(log, turn))
        await asyncio.sleep(0.3)
        assert await log.end_abandoned(turn, "error", final, quiet_seconds=0.2)
        events = await reader
        assert [(e.id, e.name, e.final) for e in events[-1:]] == [(4, "error", True)]
        assert not await log.end_abandoned(turn, "error", final, quiet_seconds=0)  # ended once
        assert not await log.end_abandoned(ended, "error", final, quiet_seconds=0)
        assert not await log.end_abandoned("no-such-turn", "error", final, quiet_seconds=0)

    run(scenario)


def test_waiting_redis_readers_hold_no_pooled_connection() -> None:
    """Two hundred readers of fifty turns on a pool of five connections: they all wait on the
    process's one XREAD, while appends and other calls still get connections at once."""

    async def scenario() -> None:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            REDIS_URL, max_connections=5, timeout=1
        )
        log = RedisEventLog(redis.asyncio.Redis(connection_pool=pool), key_prefix=PREFIX)
        try:
            turns = [new_turn() for _ in range(50)]
            writers = [log.writer(turn) for turn in turns]
            for writer in writers:
                await writer.append([("start", {})])
            replayed, all_waiting = [], asyncio.Event()

            async def read(turn: str) -> list[LoggedEvent]:
                events = []
                async for event in log.read(turn):
                    events.append(event)
                    replayed.append(event.id)  # its replay is done: it waits on the tail
                    if len(replayed) == 200:
                        all_waiting.set()
                return events

            readers = [asyncio.create_task(read(turns[i % 50])) for i in range(200)]
            async with asyncio.timeout(10):  # every reader is waiting for its turn's next event
                await all_waiting.wait()
            async with asyncio.timeout(2):  # none waits for a connection
                for writer in writers:
                    await writer.append([("done", {})], final=True)
            results = await asyncio.gather(*readers)
            assert all(ids(events) == [1, 2] for events in results)
            assert log.tail.following() == 0
        finally:
            await log.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_readers_of_finished_logs_never_make_the_tail_read_nothing(caplog) -> None:
    """A reader of a finished turn subscribes and leaves before the tail wakes up for it: the
    tail must not send Redis an XREAD of no streams (a client-side error it took for Redis
    failing, which started its count towards giving every reader up)."""

    async def scenario(log: EventLog) -> None:
        turn = new_turn()
        writer = log.writer(turn)
        await writer.append([("start", {}), ("done", {})], final=True)
        for _ in range(5):
            assert ids(await read_all(log, turn)) == [1, 2]
            await asyncio.sleep(0)  # the tail, lingering, wakes for the reader that has left

    with caplog.at_level(logging.WARNING, logger="conversations.turns.eventlog"):
        run_with("redis", scenario)

    assert [r.getMessage() for r in caplog.records] == []
