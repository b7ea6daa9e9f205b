"""Readers of a turn's events: the response that started the turn, and anyone re-attaching.

A reader of a turn this process runs follows the runner's events in memory (exact and cheap)
and counts as one of its readers, so that the turn's disconnect policy knows when the last
one leaves. A reader of a turn another process runs, or of one already finished, follows the
event log instead (Redis with REDIS_URL), from any process. Either way it gets batches of
numbered events, an empty batch while the model is silent (a keep-alive), and ends after the
final event; should the log fail it (Redis away for longer than a reader waits), it ends with
an `error` event of its own, which has no id, so that its client hears how it ended.

Readers are bounded per user and server process (MAX_READERS_PER_USER, HTTP and WebSocket
together): one user cannot open readers without end and take what all users share. The
response that starts a turn always gets its reader; one re-attaching beyond the bound is
refused with a 429.
"""

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from django.conf import settings

from conversations.exceptions import ChatError
from conversations.models import Message
from conversations.turns import registry
from conversations.turns.encoders import EventEncoder
from conversations.turns.eventlog import TurnLogNotFound, event_log
from conversations.turns.events import Failed, TurnEvent, decode
from conversations.turns.runner import TurnRun, keep, turn_key

logger = logging.getLogger(__name__)

_END = object()

# How long a reader refused for the bound is asked to wait.
READERS_RETRY_AFTER = 5
# The readers each user has open in this process.
_readers: Counter[int] = Counter()


class TooManyReaders(ChatError):
    status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} answer streams open, the most one person may have; close one "
            f"(another tab or window?) and try again in {READERS_RETRY_AFTER} seconds.",
            headers={"Retry-After": str(READERS_RETRY_AFTER)},
        )


def readers_attached() -> int:
    """How many readers (responses, sockets) follow turns in this process now."""
    return _readers.total()


def _count_reader(user_id: int, *, refusable: bool) -> None:
    limit = settings.MAX_READERS_PER_USER
    if refusable and _readers[user_id] >= limit:
        raise TooManyReaders(limit)
    _readers[user_id] += 1


def _uncount_reader(user_id: int) -> None:
    _readers[user_id] -= 1
    if _readers[user_id] <= 0:
        del _readers[user_id]


def lost_log_event(exc: BaseException) -> TurnEvent:
    """The event that ends a reader whose log failed it: an `error` without an id (nothing
    to resume from), saying the answer is not lost."""
    logger.warning("A reader lost its turn's events: %r", exc)
    return Failed(
        id=None,
        status="unavailable",
        message=(
            "This answer's progress cannot be followed right now. It is not lost: reload to see it."
        ),
        code="events_unavailable",
        http_status=503,
    )


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
        reader_of: int | None = None,
    ) -> None:
        self.encoder = encoder
        self._batches, self._first, self._run = batches, first, run
        self._on_leave = on_leave
        self._loop = asyncio.get_running_loop()
        self._left = self._closed = self._ended = False
        # The user whose readers this one counts among (see MAX_READERS_PER_USER), if any.
        self._reader_of = reader_of
        if run is not None:
            run.attach()

    def __aiter__(self) -> "TurnStream":
        # Django calls aiter() when it builds the response, long before it reads from it.
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            batch, self._first = self._first, None
        elif self._ended:
            self._leave()
            raise StopAsyncIteration
        else:
            try:
                batch = await anext(self._batches)
            except (StopAsyncIteration, asyncio.CancelledError, GeneratorExit):
                self._leave()  # the end, or the client leaving (Django cancels the read)
                raise
            except Exception as exc:
                self._ended = True  # the log failed: the reader still hears how it ended
                batch = [lost_log_event(exc)]
            except BaseException:
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
            if self._reader_of is not None:
                _uncount_reader(self._reader_of)
            if self._run is not None:
                self._run.detach()
            if self._on_leave is not None:
                self._on_leave()


def follow_run(
    run: TurnRun,
    encoder: EventEncoder,
    *,
    after: int = 0,
    keepalive_seconds: float,
    refusable: bool = False,
) -> TurnStream:
    """Read a turn this process runs, from the event after `after`; a `refusable` reader
    (one re-attaching) raises TooManyReaders past the user's bound."""
    user_id = run.turn.user_id
    _count_reader(user_id, refusable=refusable)
    return TurnStream(run.follow(after, keepalive_seconds), encoder, run=run, reader_of=user_id)


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
    run = registry.find(user_id=user_id, request_id=request_id)
    if run is not None:
        if run.status is not None and after >= len(run.events):
            return None
        if not counts_as_reader:
            return TurnStream(run.follow(after, keepalive_seconds), encoder)
        return follow_run(
            run, encoder, after=after, keepalive_seconds=keepalive_seconds, refusable=True
        )
    if counts_as_reader:
        _count_reader(user_id, refusable=True)
    try:
        batches = _log_batches(
            turn_key(user_id, request_id),
            after,
            keepalive_seconds=keepalive_seconds,
            first_wait=min(FIRST_READ_SECONDS, keepalive_seconds),
        )
        try:
            first = await anext(batches)
        except StopAsyncIteration:
            first = None
    except BaseException:
        if counts_as_reader:
            _uncount_reader(user_id)
        raise
    if first is None:
        if counts_as_reader:
            _uncount_reader(user_id)
        return None
    if not counts_as_reader:
        return TurnStream(batches, encoder, first=first)
    # Another process may run the turn: count this reader there (see running_turns).
    signal = functools.partial(registry.signal_reader, user_id=user_id, request_id=request_id)
    try:
        await signal(change=1)
    except BaseException:
        _uncount_reader(user_id)
        raise

    def leave() -> None:
        keep(asyncio.ensure_future(signal(change=-1)))

    return TurnStream(batches, encoder, first=first, on_leave=leave, reader_of=user_id)


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
                queue.put_nowait(decode(event))
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
