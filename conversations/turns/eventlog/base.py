"""What every event log offers: numbered events per turn, one writer, any number of readers.

A turn's owner (one task) writes through a `TurnWriter`; readers replay what is stored after
the id they last saw, follow live, and stop after the turn's final event. Event ids are 1, 2,
3… with no gaps, so an SSE `Last-Event-ID` resumes exactly. The backends differ only in where
the events live and how a reader waits for the next one.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

# One event as the writer hands it over: its name and its JSON-serialisable data.
EventSpec = tuple[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event of a turn as the log holds it (conversations.turns.events types it);
    `final` marks the last, after which readers stop."""

    id: int
    name: str
    data: dict[str, Any]
    final: bool = False


class EventLogError(Exception):
    """Something about a turn's event log went wrong."""


class TurnLogNotFound(EventLogError):
    """The turn's log does not exist: never written, expired, or deleted."""


class TurnLogClosed(EventLogError):
    """The turn's final event is written; nothing may follow it."""


class TurnLogConflict(EventLogError):
    """The log already holds the ids this writer meant to use: a second writer for the turn."""


class TurnLogGap(EventLogError):
    """Events the reader asked for were dropped by the log's cap; it cannot resume there."""


class TurnLogBehind(EventLogError):
    """The log holds fewer events than this writer wrote: the store lost them (a Redis that
    restarted without persistence). `last_id` is the last event it still holds (0: none);
    the writer has rewound to it, and must append again from the event after."""

    def __init__(self, message: str, *, last_id: int) -> None:
        super().__init__(message)
        self.last_id = last_id


class TurnLogUnavailable(EventLogError):
    """The log cannot be read now (its store is unreachable), and was not for longer than a
    reader waits: the reader gives up without the turn's final event."""


class TurnWriter(ABC):
    """Append a turn's events; used by the one task that owns the turn."""

    def __init__(self, turn_key: str) -> None:
        self.turn_key = turn_key
        self.last_id = 0
        self.closed = False

    async def append(self, events: Sequence[EventSpec], *, final: bool = False) -> int:
        """Number the events after the last, store them together, and return the last id.

        With `final`, the batch's last event ends the turn and the log starts to expire.
        """
        if self.closed:
            raise TurnLogClosed(f"Turn {self.turn_key!r} has ended; nothing may follow.")
        if not events:
            raise ValueError("append() needs at least one event.")
        numbered = [
            LoggedEvent(self.last_id + i, name, data, final and i == len(events))
            for i, (name, data) in enumerate(events, start=1)
        ]
        try:
            await self._store(numbered)
        except TurnLogBehind as behind:
            self.last_id, self.closed = behind.last_id, False
            raise
        # Only once stored: a failed write leaves the writer where it was, to retry. A retry of
        # a batch whose reply alone was lost finds it stored, and stores nothing twice.
        self.last_id = numbered[-1].id
        self.closed = final
        return self.last_id

    @abstractmethod
    async def _store(self, events: list[LoggedEvent]) -> None:
        """Store the numbered batch at once. The same batch stored already is no error (a
        retry after a lost reply); other events under its ids raise TurnLogConflict, and a
        log that lacks events before the batch raises TurnLogBehind."""


class EventLog(ABC):
    """Per-turn event logs: a writer for the owner, replay-and-follow reads for everyone."""

    @abstractmethod
    def writer(self, turn_key: str) -> TurnWriter:
        """Return the writer for a new turn; its first event gets id 1.

        Append the first event before handing the turn key to readers: a reader of a turn
        with no events yet gets TurnLogNotFound.
        """

    async def read(self, turn_key: str, *, after: int = 0) -> AsyncIterator[LoggedEvent]:
        """Yield every event with an id above `after`, live as they come, up to the final one.

        Raises TurnLogNotFound if the turn has no log (unknown, expired or deleted), also
        when it goes away while being followed, and TurnLogGap if the cap dropped events the
        reader still needed. Ends at once when `after` is already at or past the final event.
        A reader that stops early should close the iterator (`contextlib.aclosing`).
        """
        expected = after + 1
        # aclosing: a reader that stops early gives back its blocked Redis connection now,
        # not whenever the garbage collector finalises the inner generator.
        async with aclosing(self._follow(turn_key, after)) as events:
            async for event in events:
                if event.id != expected:
                    raise TurnLogGap(
                        f"Turn {turn_key!r} no longer holds event {expected} (next is {event.id})."
                    )
                yield event
                if event.final:
                    return
                expected += 1

    @abstractmethod
    def _follow(self, turn_key: str, after: int) -> AsyncIterator[LoggedEvent]:
        """Yield stored events with ids above `after` in order, then new ones as they come;
        stop only when the final event is yielded or was already at or before `after`."""

    @abstractmethod
    async def exists(self, turn_key: str) -> bool:
        """Return whether the turn has a log that readers can read."""

    @abstractmethod
    async def delete(self, turn_key: str) -> None:
        """Remove the turn's log now (tests and clean-up); its readers get TurnLogNotFound."""

    @abstractmethod
    async def end_abandoned(
        self, turn_key: str, name: str, data: dict[str, Any], *, quiet_seconds: float
    ) -> bool:
        """Append a final event to a turn's log whose writer is gone, so that its readers
        anywhere end: only where the log exists, has no final event yet, and has had no
        append for `quiet_seconds` (a live writer would have appended meanwhile). Return
        whether it did."""

    @abstractmethod
    async def length(self, turn_key: str) -> int:
        """Return how many events the turn's log holds now (0 without a log); the cap bounds it."""

    async def aclose(self) -> None:
        """Release the backend's connections, if it has any."""
        return
