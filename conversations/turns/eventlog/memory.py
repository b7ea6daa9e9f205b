"""Turn event logs kept in this process's memory, for the embedded default (`make run`).

It serves one process and one event loop: readers wait on asyncio primitives of the loop
that uses them, and nothing is shared with another process. With several server processes,
set REDIS_URL so that every process reads the same logs.

It mirrors the Redis backend's semantics: each log keeps at most `max_events` events (the
oldest go first), a running log expires `running_ttl_seconds` after its last append (so a
crashed writer's log does not stay forever), and a finished log `ttl_seconds` after its
final event. Expired logs are purged lazily, on any later call, oldest first; memory stays
bounded because every call that adds a log also purges.
"""

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from conversations.turns.eventlog.base import (
    EventLog,
    LoggedEvent,
    TurnLogBehind,
    TurnLogConflict,
    TurnLogNotFound,
    TurnWriter,
)


class _Log:
    """One turn's events, and the signal that wakes its readers."""

    def __init__(self, max_events: int) -> None:
        self.events: deque[LoggedEvent] = deque(maxlen=max_events)
        self.final_id: int | None = None
        self.gone = False
        # Replaced after each wake-up, so a reader waits only for what comes after it looked.
        self.changed = asyncio.Event()

    @property
    def last_id(self) -> int:
        return self.events[-1].id if self.events else 0

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def after(self, after: int) -> list[LoggedEvent]:
        """Return the held events with ids above `after` (a copy: the writer may append)."""
        if not self.events or self.last_id <= after:
            return []
        start = max(0, after + 1 - self.events[0].id)
        # Index from the end: a live reader asks for the last few, which a deque reaches fast.
        return [self.events[i] for i in range(start, len(self.events))]


class MemoryEventLog(EventLog):
    """Keep each turn's events in a bounded in-process list with the same rules as Redis."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 600,
        max_events: int = 10_000,
        running_ttl_seconds: float = 3600,
        block_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_events = max_events
        self.running_ttl_seconds = running_ttl_seconds
        self.block_seconds = block_seconds
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        # Deadlines in the order they fall: each kind has one TTL, so refreshing a deadline
        # moves it to the end, and purging only ever looks at the front.
        self._running: OrderedDict[str, float] = OrderedDict()
        self._finished: OrderedDict[str, float] = OrderedDict()

    def writer(self, turn_key: str) -> TurnWriter:
        return _MemoryWriter(self, turn_key)

    def held(self) -> int:
        """Return how many turn logs are in memory, once expired ones are purged."""
        self._purge()
        return len(self._logs)

    async def exists(self, turn_key: str) -> bool:
        self._purge()
        return turn_key in self._logs

    async def delete(self, turn_key: str) -> None:
        self._drop(turn_key)

    async def length(self, turn_key: str) -> int:
        self._purge()
        log = self._logs.get(turn_key)
        return len(log.events) if log else 0

    async def end_abandoned(
        self, turn_key: str, name: str, data: dict[str, Any], *, quiet_seconds: float
    ) -> bool:
        self._purge()
        log = self._logs.get(turn_key)
        deadline = self._running.get(turn_key)
        if log is None or log.final_id is not None or deadline is None:
            return False
        if self._clock() - (deadline - self.running_ttl_seconds) < quiet_seconds:
            return False  # appended to lately: its writer is alive
        self._store(turn_key, [LoggedEvent(log.last_id + 1, name, data, True)])
        return True

    def _store(self, turn_key: str, events: list[LoggedEvent]) -> None:
        self._purge()
        log = self._logs.get(turn_key)
        last_id = log.last_id if log is not None else 0
        if events[0].id > last_id + 1:
            raise TurnLogBehind(
                f"Turn {turn_key!r} holds events up to {last_id} only.", last_id=last_id
            )
        if log is None:
            log = self._logs[turn_key] = _Log(self.max_events)
        elif events[0].id <= last_id:
            if _ends_with(log.events, events):
                return  # this very batch, stored already: its writer retries after a lost reply
            raise TurnLogConflict(
                f"Turn {turn_key!r} already holds event {events[0].id}: a second writer?"
            )
        elif log.final_id is not None:
            raise TurnLogConflict(f"Turn {turn_key!r} has ended: a second writer?")
        log.events.extend(events)
        now = self._clock()
        self._running.pop(turn_key, None)
        if events[-1].final:
            log.final_id = events[-1].id
            self._finished[turn_key] = now + self.ttl_seconds
        else:
            self._running[turn_key] = now + self.running_ttl_seconds
        log.wake()

    async def _follow(self, turn_key: str, after: int) -> AsyncIterator[LoggedEvent]:
        self._purge()
        log = self._logs.get(turn_key)
        if log is None:
            raise TurnLogNotFound(f"No event log for turn {turn_key!r}.")
        while True:
            if log.gone:
                raise TurnLogNotFound(f"The event log of turn {turn_key!r} went away.")
            if log.final_id is not None and after >= log.final_id:
                return
            if events := log.after(after):
                for event in events:
                    yield event
                    after = event.id
                continue
            changed = log.changed
            try:
                # Bounded, so that a log whose writer died is still purged and noticed.
                async with asyncio.timeout(self.block_seconds):
                    await changed.wait()
            except TimeoutError:
                self._purge()

    def _purge(self) -> None:
        now = self._clock()
        for deadlines in (self._running, self._finished):
            while deadlines:
                turn_key, deadline = next(iter(deadlines.items()))
                if deadline > now:
                    break
                self._drop(turn_key)

    def _drop(self, turn_key: str) -> None:
        self._running.pop(turn_key, None)
        self._finished.pop(turn_key, None)
        log = self._logs.pop(turn_key, None)
        if log is not None:
            log.gone = True
            log.wake()


def _ends_with(held: deque[LoggedEvent], batch: list[LoggedEvent]) -> bool:
    return len(held) >= len(batch) and list(held)[-len(batch) :] == batch


class _MemoryWriter(TurnWriter):
    def __init__(self, log: MemoryEventLog, turn_key: str) -> None:
        super().__init__(turn_key)
        self._log = log

    async def _store(self, events: list[LoggedEvent]) -> None:
        self._log._store(self.turn_key, events)
