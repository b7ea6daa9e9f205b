"""The turn runner: a task this process owns asks the model, accumulates the answer, numbers
its events, and saves the turn once however it ends. Responses only read those events.

    view ──▶ services.turn_start (prompt saved) ──▶ TurnRun.start() ──▶ owner task
                                                                         │ model chunks
                        events 1, 2, 3… ◀── publish ◀────────────────────┤
         ┌──────────────────┴───────────────────┐                        │ end / Stop
    readers in this process            eventlog (Redis or memory)        ▼
    (readers.follow_run)                readers anywhere, resumable   hooks: save the turn
                                                                       then the final event

A reader that leaves is not a Stop: when the last one goes, the turn's disconnect policy
decides (settings.TURN_DISCONNECT_POLICY). Nothing here touches the request object. See
docs/streaming.md for the lifecycle and the ways a turn ends.
"""

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import SyncToAsync
from django.conf import settings

from conversations.accounts.leases import HeldLease, ensure_renewing
from conversations.exceptions import ProviderError
from conversations.models import Message
from conversations.providers import ChatModelClient, ModelChunk
from conversations.providers.client import PrefetchedStream
from conversations.records import FinishedTurn, StartedTurn
from conversations.services import INTERRUPTED_ERROR, Checkpoint
from conversations.turns import checkpoints, live, registry, titles
from conversations.turns.eventlog import (
    EventLog,
    TurnLogBehind,
    TurnLogConflict,
    TurnWriter,
    event_log,
)
from conversations.turns.events import Delta, Done, Failed, Reasoning, Start, TurnEvent
from conversations.turns.hooks import run_post_stream_hooks
from conversations.turns.saving import SAVED, UNSAVED, save_turn_durably
from conversations.turns.token_estimate import estimate_prompt_tokens

logger = logging.getLogger(__name__)

# Tasks that must not be garbage-collected mid-run: turns' owners, log flushes, saves.
_tasks: set[asyncio.Task] = set()

CONTINUE, CANCEL = "continue", "cancel"
# How long a failing event log is retried before a turn gives up on it (readers in this
# process are unaffected), and the longest pause between two tries.
LOG_RETRY_SECONDS = 300.0
LOG_RETRY_MAX_PAUSE = 2.0
# How long a turn's end waits for its final event to reach the log, and for its lease to be
# given back, before it goes on without them.
FINAL_APPEND_WAIT_SECONDS = 1.0
LEASE_RELEASE_SECONDS = 2.0
# What readers are told when the server ends a turn itself (a restart's grace period ran out).
RESTARTING_MESSAGE = (
    "The server is restarting, so this answer stopped here. Send your message again in a moment."
)
# "continue", "cancel", or a grace period in seconds (see settings.TURN_DISCONNECT_POLICY).
DisconnectPolicy = str | float


def _running_leases() -> list[HeldLease]:
    return [run._lease for run in registry.all_runs() if run._lease is not None]


def detached() -> contextvars.Context:
    """A copy of the current context outside any request's thread-sensitive context: for
    tasks that outlive the request that started them (a request's sync thread goes back to
    a pool when it ends: chatsite.handlers). Their sync work runs on executors of their own
    (conversations.executors); anything thread-sensitive left in them gets asgiref's own
    thread instead of a request's."""
    context = contextvars.copy_context()
    context.run(SyncToAsync.thread_sensitive_context.set, None)  # type: ignore[arg-type]
    return context


def keep(task: asyncio.Task) -> asyncio.Task:
    """Hold a strong reference to the task until it is done."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


def turn_key(user_id: int, request_id: str) -> str:
    """The turn's name in the event log: request IDs are unique per user, not globally."""
    return f"{user_id}:{request_id}"


class TurnAccumulator:
    """Collect the answer as it streams: text, reasoning, usage and timings."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.first_reasoning_at: float | None = None
        self.first_content_at: float | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.token_chunks = 0
        self.response_id = ""
        self.finish_reason = ""
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.usage_reported = False
        self._prompt_estimate: int | None = None

    def add(self, chunk: ModelChunk) -> None:
        if chunk.response_id:
            self.response_id = chunk.response_id
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self.prompt_tokens = chunk.usage.prompt_tokens
            self.completion_tokens = chunk.usage.completion_tokens
            self.usage_reported = True
        if chunk.reasoning:
            self._saw_token()
            if self.first_reasoning_at is None:
                self.first_reasoning_at = time.monotonic()
            self.reasoning.append(chunk.reasoning)
        if chunk.content:
            self._saw_token()
            if self.first_content_at is None:
                self.first_content_at = time.monotonic()
            self.content.append(chunk.content)

    def _saw_token(self) -> None:
        self.token_chunks += 1
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def reasoning_ms(self) -> int | None:
        """How long the model thought: from its first reasoning to its first text, or until
        now while it still thinks (or when it ended without text); None without reasoning."""
        if self.first_reasoning_at is None:
            return None
        until = self.first_content_at or time.monotonic()
        return max(0, round((until - self.first_reasoning_at) * 1000))

    @property
    def counted_completion_tokens(self) -> int:
        """The model's own count; without it, the chunks we received are the honest estimate."""
        return self.completion_tokens if self.usage_reported else self.token_chunks

    def checkpoint(self, turn: StartedTurn, *, through_event: int) -> Checkpoint:
        """The answer so far, for its row while it streams: the text of its events up to
        `through_event`."""
        return Checkpoint(
            assistant_message_id=turn.assistant_message_id,
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            prompt_tokens=self.prompt_tokens_for(turn),
            completion_tokens=self.counted_completion_tokens,
            reasoning_ms=self.reasoning_ms(),
            through_event=through_event,
        )

    def prompt_tokens_for(self, turn: StartedTurn) -> int:
        # Every answer is charged for its prompt: counted by us when the model did not say.
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        if self._prompt_estimate is None:
            self._prompt_estimate = estimate_prompt_tokens(turn.history)
        return self._prompt_estimate

    def finish(self, turn: StartedTurn, *, status: str, error: str = "") -> FinishedTurn:
        """Freeze what was received into the record the post-stream hooks get."""
        ttft = self.first_token_at and round((self.first_token_at - self.started) * 1000)
        return FinishedTurn(
            request_id=turn.request_id,
            user_id=turn.user_id,
            conversation_id=turn.conversation_id,
            user_message_id=turn.user_message_id,
            assistant_message_id=turn.assistant_message_id,
            model_key=turn.model.key,
            status=status,
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            finish_reason=self.finish_reason,
            upstream_id=self.response_id,
            prompt_tokens=self.prompt_tokens_for(turn),
            completion_tokens=self.counted_completion_tokens,
            usage_reported=self.usage_reported,
            time_to_first_token_ms=ttft,
            duration_ms=round((time.monotonic() - self.started) * 1000),
            error=error,
            prompt_hash=turn.prompt_hash,
            reasoning_ms=self.reasoning_ms(),
            prefill=turn.prefill,
            before_prefill_hash=turn.before_prefill_hash,
        )


class TurnRun:
    """One turn, run by a task this process owns; any number of readers follow its events.

    `start()` begins the owner task. It publishes `start`, one `delta` or `reasoning` event
    per model chunk, and, once the turn is saved, a final `done` or `error`. Events are kept
    here for this process's readers, who get each at once, and appended to the event log for
    readers anywhere in batches: one append in flight at a time, at most one per
    TURN_LOG_FLUSH_SECONDS, and whatever arrives meanwhile goes in the next.
    """

    def __init__(
        self,
        turn: StartedTurn,
        *,
        client: ChatModelClient,
        params: dict[str, Any] | None = None,
        lease: HeldLease | None = None,
        on_disconnect: DisconnectPolicy = CONTINUE,
        log: EventLog | None = None,
        flush_seconds: float | None = None,
        first_token_deadline: float | None = None,
        prefetched: PrefetchedStream | None = None,
    ) -> None:
        self.turn = turn
        self.accumulator = TurnAccumulator()
        self.on_disconnect = on_disconnect
        self.events: list[TurnEvent] = []
        self.status: str | None = None  # set once the turn is saved
        self.record: str | None = None  # where it was saved: saving.SAVED, SPOOLED or UNSAVED
        # What the turn ended with, as its hooks got it: what whole answers are made of.
        self.finished: FinishedTurn | None = None
        self.failure: ProviderError | None = None
        self.checkpointed_chunks = (
            0  # how far the last checkpoint got (conversations.turns.checkpoints)
        )
        self._first_token_deadline = first_token_deadline
        self._client, self._params, self._lease = client, params or {}, lease
        # The model's stream, when it was asked while the prompt was saved (turn_starts):
        # the time to the first token and the duration then count from the asking.
        self._prefetched = prefetched
        if prefetched is not None:
            self.accumulator.started = prefetched.asked_at
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._reading = False  # the model was asked: a Stop now cancels the owner task
        self._stop_requested = False
        self._interrupt_requested = False
        self._readers = 0
        self._grace: asyncio.TimerHandle | None = None
        log = log or event_log()
        self._writer: TurnWriter | None = log.writer(turn_key(turn.user_id, turn.request_id))
        self._flushing: asyncio.Task | None = None
        self._flush_seconds = (
            settings.TURN_LOG_FLUSH_SECONDS if flush_seconds is None else flush_seconds
        )

    # --- the owner ---------------------------------------------------------------------

    def start(self) -> "TurnRun":
        """Start the owner task, once; the `start` event is published at once."""
        if self._task is None:
            self._publish([Start.of(self.turn)])
            registry.register(self)
            checkpoints.ensure_checkpointing()
            if self._lease is not None:
                ensure_renewing(_running_leases)
            live.turn_started(self)  # staff's live view (one notice, sent by a task)
            self._task = keep(
                asyncio.create_task(
                    self._run(), name=f"turn {self.turn.request_id}", context=detached()
                )
            )
        return self

    async def _run(self) -> None:
        status, error, cancelled = Message.Status.STOPPED, "", False
        chunks: AsyncIterator[ModelChunk] | None = self._prefetched  # closed however it ends
        try:
            if self._interrupt_requested:  # before the model was asked
                status, error = self._interrupted()
            elif not self._stop_requested:
                chunks = chunks or self._client.stream_chat(
                    model=self.turn.model.upstream_id,
                    messages=self.turn.history,
                    request_id=self.turn.request_id,
                    **self._params,
                )
                self._reading = True  # no await since the check: a Stop now cancels us
                await self._read(chunks)
                status = Message.Status.COMPLETED
        except asyncio.CancelledError:
            if self._stop_requested:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            else:
                # The server ends the turn (a shutdown): saved as interrupted, not as a Stop.
                status, error = self._interrupted()
                cancelled = not self._interrupt_requested
                if not cancelled:
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
        except ProviderError as exc:
            status, error, self.failure = Message.Status.FAILED, exc.message, exc
        except Exception as exc:  # an SDK or parsing surprise must still end the turn cleanly
            logger.exception("Unexpected error reading the model's stream")
            self.failure = ProviderError(f"Unexpected error from the model: {exc}")
            status, error = Message.Status.FAILED, self.failure.message
        finally:
            self._reading = False
            self.finished = finished = self.accumulator.finish(
                self.turn, status=status, error=error
            )
            try:
                release = self._lease.release if self._lease else None
                self.record = await finish_turn(chunks, finished, release)
            except asyncio.CancelledError:
                cancelled = True  # cancelled again: the save goes on in its own task
            # Whatever failed above, the turn ends here: unregistered, its final event to
            # every reader, staff told. A failure of one step must not skip the next.
            _guarded(registry.unregister, self)
            _guarded(self._end, status)
            _guarded(live.turn_ended, self)
            await self._wait_logged()
        if cancelled:
            raise asyncio.CancelledError

    def _interrupted(self) -> tuple[str, str]:
        self.failure = ProviderError(RESTARTING_MESSAGE, status=503)
        return Message.Status.INTERRUPTED, INTERRUPTED_ERROR

    async def _read(self, chunks: AsyncIterator[ModelChunk]) -> None:
        """Read the model's stream to its end; the first chunk with text must come within
        the first-token deadline, if there is one."""
        try:
            async with asyncio.timeout(self._first_token_deadline) as deadline:
                async for chunk in chunks:
                    self.accumulator.add(chunk)
                    if self.accumulator.token_chunks:
                        deadline.reschedule(None)
                    if events := chunk_events(chunk):
                        self._publish(events)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise ProviderError(
                f"The model did not start answering within {self._first_token_deadline:g} seconds.",
                status=504,
            ) from None

    def _end(self, status: str) -> None:
        self.status = status
        if self._grace is not None:
            self._grace.cancel()
        if self.failure is not None:
            self._publish([Failed.of(self.failure, status=status, record=self.record)])
        else:
            # What was saved and charged, as the hooks got it (set before the turn ends).
            finished = self.finished
            assert finished is not None
            ending = Done(
                status=status,
                finish_reason=finished.finish_reason,
                usage=finished.usage,
                record=self.record,
            )
            self._publish([ending])

    def _publish(self, events: list[TurnEvent]) -> None:
        """Number the events, wake this process's readers, and queue them for the log."""
        first = len(self.events) + 1
        self.events.extend(
            dataclasses.replace(event, id=i) for i, event in enumerate(events, start=first)
        )
        self._changed.set()
        self._changed = asyncio.Event()
        if self._writer is not None and (self._flushing is None or self._flushing.done()):
            self._flushing = keep(asyncio.create_task(self._flush()))

    async def _flush(self) -> None:
        """Append what is not yet in the event log, one batch per round trip, at most one
        per `flush_seconds` (the first at once, so that readers elsewhere can attach).

        A failed append is tried again with a back-off for LOG_RETRY_SECONDS, with whatever
        came meanwhile: readers here get every event regardless, and once Redis is back the
        log catches up. A log that lost events (Redis restarted without persistence) gets
        them again from this turn's own list, so that readers anywhere can still resume."""
        writer, failing_since, failures = self._writer, None, 0
        while writer is not None and writer.last_id < len(self.events):
            batch = self.events[writer.last_id :]
            try:
                await writer.append([e.spec() for e in batch], final=batch[-1].final)
            except TurnLogBehind as behind:
                logger.warning("The event log of %s lost events: %s", self.turn.request_id, behind)
                continue  # the writer rewound: the next batch starts after what the log holds
            except Exception as exc:
                loop = asyncio.get_running_loop()
                failing_since = failing_since or loop.time()
                failures += 1
                if isinstance(exc, TurnLogConflict) or (
                    loop.time() - failing_since > LOG_RETRY_SECONDS
                ):
                    logger.error("Gave up writing turn %s to the event log", self.turn.request_id)
                    self._writer = None
                    return
                if failures == 1:
                    logger.warning(
                        "Writing turn %s to the event log failed (%r); retrying",
                        self.turn.request_id,
                        exc,
                    )
                await asyncio.sleep(min(LOG_RETRY_MAX_PAUSE, 0.05 * 2**failures))
                continue
            if failing_since is not None:
                logger.info("Turn %s is in the event log again", self.turn.request_id)
                failing_since, failures = None, 0
            if not batch[-1].final and self._flush_seconds:
                # Wait, but not past the turn's end: the final event goes out at once.
                await self._wait_until(lambda: self.status is not None, self._flush_seconds)

    async def _wait_logged(self) -> None:
        """Give the final event's append a moment, so that a shutdown waiting for this turn
        (wait_saved) lets readers elsewhere have it; an append still failing goes on alone."""
        if self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing], timeout=FINAL_APPEND_WAIT_SECONDS)

    async def _wait_until(self, condition: Callable[[], bool], seconds: float) -> None:
        """Wait up to `seconds` for `condition` to hold, checking it at each publish."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not condition():
            changed = self._changed
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                return

    # --- Stop and disconnects -------------------------------------------------------------

    def stop(self) -> None:
        """Stop the turn at once: close the model's stream, save the partial answer as
        stopped, and end every reader's stream with `done`, status stopped."""
        if self._stop_requested or self.status is not None:
            return
        self._stop_requested = True
        if self._reading and self._task is not None:
            self._task.cancel()
        # Not yet reading: the owner sees the request before it asks the model.

    def interrupt(self) -> None:
        """End the turn for the server's own reasons (a shutdown whose grace period ran out):
        save the partial answer as interrupted, and end every reader's stream with `error`
        saying the server is restarting."""
        if self._stop_requested or self._interrupt_requested or self.status is not None:
            return
        self._interrupt_requested = True
        if self._reading and self._task is not None:
            self._task.cancel()
        # Not yet reading: the owner sees the request before it asks the model.

    async def wait_saved(self) -> None:
        """Wait until the turn has ended and been saved (or spooled)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    def attach(self) -> None:
        """Count a reader; one that comes back within a grace period keeps the turn going."""
        self._readers += 1
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def detach(self) -> None:
        """Count a reader out; when the last one goes, apply the disconnect policy."""
        if self._readers <= 0:
            return  # a leave whose arrival was never counted (a lost cross-process signal)
        self._readers -= 1
        if self._readers > 0 or self.status is not None:
            return
        if self.on_disconnect == CANCEL:
            self.stop()
        elif self.on_disconnect != CONTINUE:
            self._grace = asyncio.get_running_loop().call_later(
                float(self.on_disconnect), self._grace_over
            )

    def _grace_over(self) -> None:
        self._grace = None
        if self._readers == 0:
            self.stop()

    # --- reading ---------------------------------------------------------------------------

    async def follow(self, after: int, keepalive_seconds: float) -> AsyncIterator[list[TurnEvent]]:
        """Yield the events after id `after` in batches as they come, up to the final one;
        an empty batch after `keepalive_seconds` without any."""
        while True:
            if len(self.events) > after:
                batch = self.events[after:]
                after = batch[-1].id
                yield batch
                if batch[-1].final:
                    return
                continue
            changed = self._changed
            try:
                async with asyncio.timeout(keepalive_seconds):
                    await changed.wait()
            except TimeoutError:
                yield []

    async def wait_answered(self, patience: float) -> None:
        """Wait up to `patience` seconds for the model's first chunk, or the turn's end."""
        # Any event after `start` is one or the other.
        await self._wait_until(lambda: len(self.events) >= 2, patience)

    def failure_before_answer(self) -> ProviderError | None:
        """The failure that ended the turn before the model sent any text, if it did."""
        if self.failure is not None and self.accumulator.token_chunks == 0:
            return self.failure
        return None


def chunk_events(chunk: ModelChunk) -> list[TurnEvent]:
    """The events a model chunk makes: its reasoning, then its text."""
    events: list[TurnEvent] = []
    if chunk.reasoning:
        events.append(Reasoning(content=chunk.reasoning))
    if chunk.content:
        events.append(Delta(content=chunk.content))
    return events


async def finish_turn(
    chunks: AsyncIterator[ModelChunk] | None,
    finished: FinishedTurn,
    release: Callable[[], Awaitable[None]] | None,
) -> str:
    """Close the model's stream (the model then stops generating), save the turn durably,
    run the extra post-stream hooks, then release the user's stream lease; safe from a
    second cancellation. Return where the turn was recorded (see conversations.turns.saving).

    Each step runs whatever the one before did: a failing hook, a lease that cannot be
    released (Redis away: it lapses by itself within STREAM_LEASE_SECONDS) or a surprise in
    the save still lets the turn end. While the database is away the hooks run after the
    turn has ended, so that its client hears `done` without waiting for them."""

    async def close_save_release() -> str:
        record = UNSAVED
        try:
            if chunks is not None:
                await chunks.aclose()  # type: ignore[attr-defined]
        except Exception:
            logger.warning("Closing the model's stream failed", exc_info=True)
        try:
            record = await save_turn_durably(finished)
            if record == SAVED:
                await run_post_stream_hooks(finished)
            else:
                keep(asyncio.create_task(run_post_stream_hooks(finished)))
            # On its own task: the release below (and the reader's end) never waits for it.
            await titles.title_after_first_answer(finished)
        except Exception:
            logger.exception("Ending turn %s failed", finished.request_id)
        finally:
            if release is not None:
                await release_or_lapse(release, finished.request_id)
        return record

    return await asyncio.shield(keep(asyncio.create_task(close_save_release())))


async def release_or_lapse(release: Callable[[], Awaitable[None]], request_id: str) -> None:
    """Give a stream lease back; one that cannot be (Redis away or slow) is left to lapse."""
    try:
        async with asyncio.timeout(LEASE_RELEASE_SECONDS):
            await release()
    except Exception as exc:
        logger.warning(
            "The stream lease of %s could not be released (%r); it lapses by itself",
            request_id,
            exc,
        )


def _guarded(step: Callable[..., object], *args: Any) -> None:
    """Run one step of a turn's ending; a failure is logged, and the next step still runs."""
    try:
        step(*args)
    except Exception:
        logger.exception("Ending a turn: %s failed", getattr(step, "__qualname__", step))


async def finish_unstarted_turn(
    turn: StartedTurn,
    release: Callable[[], Awaitable[None]] | None,
    *,
    status: str = Message.Status.STOPPED,
    error: str = "",
    prefetched: PrefetchedStream | None = None,
) -> None:
    """Save a turn that never started running, and release it: as stopped when the client
    left while its prompt was being saved, as failed when starting it failed. A model stream
    asked for meanwhile is closed."""
    finished = TurnAccumulator().finish(turn, status=status, error=error)
    await finish_turn(prefetched, finished, release)
