"""Readers of a turn's events: the response that started the turn, and anyone re-attaching.

A reader of a turn this process runs follows the runner's events in memory (exact and cheap)
and counts as one of its readers, so that the turn's disconnect policy knows when the last
one leaves. A reader of a turn another process runs, or of one already finished, follows the
event log instead (Redis with REDIS_URL), from any process. Either way it gets batches of
numbered events, an empty batch while the model is silent (a keep-alive), and ends after the
final event.
"""

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

from conversations import running_turns
from conversations.encoders import EventEncoder
from conversations.eventlog import TurnEvent, TurnLogNotFound, event_log
from conversations.models import Message
from conversations.streaming import TurnRun, keep, turn_key

_END = object()


class TurnStream:
    """One reader's encoded events, as a StreamingHttpResponse reads them.

    It counts as one of the turn's readers (directly for a turn this process runs, through
    `on_leave`'s signal for one elsewhere) from when it is made until its events end, its
    client leaves (Django cancels the read), or Django closes the response: a response that
    is dropped before it is read still leaves, so the disconnect policy applies.
    """

    def __init__(
        self,
        batches: AsyncIterator[list[TurnEvent]],
        encoder: EventEncoder,
        *,
        run: TurnRun | None = None,
        first: list[TurnEvent] | None = None,
        on_leave: Callable[[], None] | None = None,
    ) -> None:
        self.encoder = encoder
        self._batches, self._first, self._run = batches, first, run
        self._on_leave = on_leave
        self._loop = asyncio.get_running_loop()
        self._left = self._closed = False
        if run is not None:
            run.attach()

    def __aiter__(self) -> "TurnStream":
        # Django calls aiter() when it builds the response, long before it reads from it.
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            batch, self._first = self._first, None
        else:
            try:
                batch = await anext(self._batches)
            except BaseException:  # the end, the client leaving (CancelledError), a failure
                self._leave()
                raise
        return self.encoder.encode(batch) if batch else self.encoder.keepalive()

    async def drain(self) -> None:
        """Read to the end without sending anything (a non-streaming API call)."""
        async for _ in self:
            pass

    def close(self) -> None:
        """Leave and stop following. Django calls this through sync_to_async, in a thread."""
        if self._closed:
            return
        self._closed = True
        try:
            running_here = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            running_here = False
        if running_here:
            self._shut()
        else:
            self._loop.call_soon_threadsafe(self._shut)

    def _shut(self) -> None:
        self._leave()
        # A log reader's task stops with its generator; a finished generator ignores this.
        keep(asyncio.ensure_future(_quietly(self._batches.aclose())))  # type: ignore[attr-defined]

    def _leave(self) -> None:
        if not self._left:
            self._left = True
            if self._run is not None:
                self._run.detach()
            if self._on_leave is not None:
                self._on_leave()


def follow_run(
    run: TurnRun, encoder: EventEncoder, *, after: int = 0, keepalive_seconds: float
) -> TurnStream:
    """Read a turn this process runs, from the event after `after`."""
    return TurnStream(run.follow(after, keepalive_seconds), encoder, run=run)


# How long a re-attaching reader waits for a turn's log before its response starts (with a
# keep-alive if nothing came): enough to tell a missing log from a live one that is quiet.
FIRST_READ_SECONDS = 0.5


async def open_turn_stream(
    *,
    user_id: int,
    request_id: str,
    after: int,
    encoder: EventEncoder,
    keepalive_seconds: float,
    counts_as_reader: bool = True,
) -> TurnStream | None:
    """Re-attach to one of the user's turns after event `after`, wherever it runs.

    Returns None when `after` is already at the turn's final event. Raises TurnLogNotFound
    when the turn has no events to read (unknown, another user's, or expired) and TurnLogGap
    when the events after `after` were dropped by the log's cap, before any response starts.
    A reader that does not count as one (staff watching) never keeps a turn going that its
    own readers left.
    """
    run = running_turns.find(user_id=user_id, request_id=request_id)
    if run is not None:
        if run.status is not None and after >= len(run.events):
            return None
        if not counts_as_reader:
            return TurnStream(run.follow(after, keepalive_seconds), encoder)
        return follow_run(run, encoder, after=after, keepalive_seconds=keepalive_seconds)
    batches = _log_batches(
        turn_key(user_id, request_id),
        after,
        keepalive_seconds=keepalive_seconds,
        first_wait=min(FIRST_READ_SECONDS, keepalive_seconds),
    )
    try:
        first = await anext(batches)
    except StopAsyncIteration:
        return None
    if not counts_as_reader:
        return TurnStream(batches, encoder, first=first)
    # Another process may run the turn: count this reader there (see running_turns).
    signal = functools.partial(running_turns.signal_reader, user_id=user_id, request_id=request_id)
    await signal(change=1)

    def leave() -> None:
        keep(asyncio.ensure_future(signal(change=-1)))

    return TurnStream(batches, encoder, first=first, on_leave=leave)


# How long a reader of an answer still streaming waits for its log: a turn that has just
# started in another process may not have written yet.
LOG_APPEAR_SECONDS = 2.0


async def open_answer_stream(
    answer: Message,
    *,
    after: int,
    encoder: EventEncoder,
    keepalive_seconds: float,
    counts_as_reader: bool = True,
) -> TurnStream | None:
    """open_turn_stream for a saved answer (its owner's turn), waiting up to
    LOG_APPEAR_SECONDS for the log of an answer still streaming.

    Raises TurnLogGap at once, and TurnLogNotFound once the answer has ended or the wait is
    over; `answer.status` is then as the database has it.
    """
    deadline = asyncio.get_running_loop().time() + LOG_APPEAR_SECONDS
    while True:
        try:
            return await open_turn_stream(
                user_id=answer.user_id,
                request_id=answer.request_id,
                after=after,
                encoder=encoder,
                keepalive_seconds=keepalive_seconds,
                counts_as_reader=counts_as_reader,
            )
        except TurnLogNotFound:
            await answer.arefresh_from_db(fields=["status"])
            late = asyncio.get_running_loop().time() > deadline
            if answer.status != Message.Status.STREAMING or late:
                raise
            await asyncio.sleep(0.1)


async def _log_batches(
    key: str, after: int, *, keepalive_seconds: float, first_wait: float
) -> AsyncIterator[list[TurnEvent]]:
    """Follow a turn's event log in batches, with an empty batch after `keepalive_seconds`
    of silence (`first_wait` for the first). A task reads the log, so that waiting for it can
    time out safely."""
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def read() -> None:
        try:
            async for event in event_log().read(key, after=after):
                queue.put_nowait(event)
            queue.put_nowait(_END)
        except Exception as exc:
            queue.put_nowait(exc)

    reading = asyncio.create_task(read())
    wait = first_wait
    try:
        while True:
            try:
                async with asyncio.timeout(wait):
                    item = await queue.get()
            except TimeoutError:
                yield []
                continue
            finally:
                wait = keepalive_seconds
            batch: list[TurnEvent] = []
            while True:
                if item is _END:
                    if batch:
                        yield batch
                    return
                if isinstance(item, Exception):
                    if batch:
                        yield batch
                    raise item
                batch.append(item)  # type: ignore[arg-type]
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        reading.cancel()


async def _quietly(closing: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):  # e.g. a generator still running elsewhere
        await closing
