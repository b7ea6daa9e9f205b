"""The streaming pipeline: model chunks in, SSE events out, the finished turn saved at the end.

    browser ──POST──▶ views.chat_stream ──▶ services.turn_start (user message saved)
                                        └──▶ stream_turn ◀── ChunkPump ◀── ChatModelClient
                                                 │ finally
                                                 ▼
                                hooks.run_post_stream_hooks ──▶ services.save_finished_turn

Nothing here touches the request object. See docs/streaming.md for the four ways a stream ends.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync

from conversations import turn_stops
from conversations.encoders import EventEncoder
from conversations.exceptions import ProviderError
from conversations.hooks import run_post_stream_hooks
from conversations.models import Message
from conversations.providers import ChatModelClient, ModelChunk
from conversations.token_estimate import estimate_prompt_tokens
from conversations.turns import FinishedTurn, StartedTurn

logger = logging.getLogger(__name__)

# Finishing tasks still running; a reference keeps them from being garbage-collected mid-save.
_finishing: set[asyncio.Task] = set()
_END = object()


class TurnStopped(Exception):
    """Someone asked for the turn to stop (see conversations.turn_stops)."""


class ChunkPump:
    """Read the model's stream in a task of its own, so the reader can wait with a timeout.

    Waiting on the queue with a timeout is safe to cancel; cancelling a read on the model's
    stream is not (it would close the stream), so keep-alives need this split.
    """

    def __init__(self, chunks: AsyncIterator[ModelChunk]) -> None:
        self._chunks = chunks
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        # The first thing the model's stream produced: a chunk, its end, or its failure.
        self.first: Any = None
        self._answered = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    def _put(self, item: Any) -> None:
        if not self._answered.is_set():
            self.first = item
            self._answered.set()
        self._queue.put_nowait(item)

    async def _read(self) -> None:
        try:
            async for chunk in self._chunks:
                self._put(chunk)
            self._put(_END)
        except ProviderError as exc:
            self._put(exc)
        except Exception as exc:  # an SDK or parsing surprise must still end the stream cleanly
            logger.exception("Unexpected error reading the model's stream")
            self._put(ProviderError(f"Unexpected error from the model: {exc}"))

    async def wait_answered(self, patience: float) -> bool:
        """Wait up to `patience` seconds for the model's first chunk, end or failure (then in
        `first`, and still queued); return whether it came."""
        try:
            async with asyncio.timeout(patience):
                await self._answered.wait()
        except TimeoutError:
            return False
        return True

    async def next_batch(self, silence_seconds: float) -> list[ModelChunk] | None:
        """Return the chunks that have arrived: [] after `silence_seconds` without any, None
        at the end of the stream. Raises the ProviderError that ended the stream."""
        try:
            async with asyncio.timeout(silence_seconds):
                item = await self._queue.get()
        except TimeoutError:
            return []
        batch: list[ModelChunk] = []
        while True:
            if item is _END:
                if batch:
                    self._queue.put_nowait(_END)
                    return batch
                return None
            if isinstance(item, ProviderError | TurnStopped):
                if batch:
                    self._queue.put_nowait(item)
                    return batch
                raise item
            batch.append(item)
            if self._queue.empty():
                return batch
            item = self._queue.get_nowait()

    def stop(self) -> None:
        """Read no further: what has arrived is still delivered, then TurnStopped."""
        if not self._task.done():
            self._task.cancel()
            self._put(TurnStopped())

    async def close(self) -> None:
        """Stop reading; closing the model's stream tells the model to stop generating."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._chunks.aclose()  # type: ignore[attr-defined]


class TurnAccumulator:
    """Collect the answer as it streams: text, reasoning, usage and timings."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.token_chunks = 0
        self.response_id = ""
        self.finish_reason = ""
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.usage_reported = False

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
            self.reasoning.append(chunk.reasoning)
        if chunk.content:
            self._saw_token()
            self.content.append(chunk.content)

    def _saw_token(self) -> None:
        self.token_chunks += 1
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    @property
    def counted_completion_tokens(self) -> int:
        """The model's own count; without it, the chunks we received are the honest estimate."""
        return self.completion_tokens if self.usage_reported else self.token_chunks

    def usage(self) -> dict[str, Any]:
        """The usage as known: no prompt count where the model reported none."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.counted_completion_tokens,
            "reported": self.usage_reported,
        }

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
            # Every answer is charged for its prompt: counted by us when the model did not say.
            prompt_tokens=(
                self.prompt_tokens
                if self.prompt_tokens is not None
                else estimate_prompt_tokens(turn.history)
            ),
            completion_tokens=self.counted_completion_tokens,
            usage_reported=self.usage_reported,
            time_to_first_token_ms=ttft,
            duration_ms=round((time.monotonic() - self.started) * 1000),
            error=error,
            prompt_hash=turn.prompt_hash,
        )


class TurnRun:
    """One turn's model stream: asked for, read in its own task, accumulated, and saved once
    when it ends, however it ends. Every surface streams a turn through one of these."""

    def __init__(
        self,
        turn: StartedTurn,
        *,
        client: ChatModelClient,
        params: dict[str, Any] | None = None,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.turn = turn
        self.accumulator = TurnAccumulator()
        self._client, self._params, self._release = client, params or {}, release
        self._pump: ChunkPump | None = None
        self._finished = False
        self._stop_requested = False

    def pump(self) -> ChunkPump:
        """Ask the model, once; its chunks then queue up in the pump. Raises TurnStopped
        when the turn was stopped before the model was asked."""
        if self._pump is None:
            if self._stop_requested:
                raise TurnStopped
            turn_stops.register(self)
            self._pump = ChunkPump(
                self._client.stream_chat(
                    model=self.turn.model.upstream_id,
                    messages=self.turn.history,
                    request_id=self.turn.request_id,
                    **self._params,
                )
            )
        return self._pump

    def stop(self) -> None:
        """Stop the turn at once (from a Stop request): the stream ends as stopped, and
        finishing it closes the model's stream."""
        self._stop_requested = True
        if self._pump is not None:
            self._pump.stop()

    async def failure_before_answer(self, patience: float) -> ProviderError | None:
        """Ask the model and wait up to `patience` seconds for it to answer. Return the
        ProviderError it failed with before its first chunk (the turn is then saved as
        failed), or None: it answered, or is still thinking.

        An API client learns a failure from the status line, which goes out with the first
        byte: this lets the status wait for the model. A client that leaves meanwhile stops
        the turn."""
        try:
            pump = self.pump()
            await pump.wait_answered(patience)
        except TurnStopped:
            return None  # the stream then ends at once, as stopped
        except asyncio.CancelledError:
            await self.finish(Message.Status.STOPPED)
            raise
        if isinstance(pump.first, ProviderError):
            await self.finish(Message.Status.FAILED, pump.first.message)
            return pump.first
        return None

    async def finish(self, status: str, error: str = "") -> None:
        """Close the model's stream, save the turn and release it; only the first call
        counts. Safe from a second cancellation."""
        if self._finished:
            return
        self._finished = True
        turn_stops.unregister(self)
        finished = self.accumulator.finish(self.turn, status=status, error=error)
        await finish_turn(self._pump, finished, self._release)


async def stream_turn(
    run: TurnRun, *, encoder: EventEncoder, keepalive_seconds: float
) -> AsyncIterator[bytes]:
    """Yield the turn's events while the model answers; save the turn however it ends.

    Cancellation (the client went away or pressed Stop) closes the model's stream at once and
    saves the partial answer as stopped; the save is shielded from a second cancellation.
    The user's stream slot is released last, whatever happened.
    """
    accumulator = run.accumulator
    outcome: tuple[str, ProviderError | None] | None = None  # once the model's stream ended
    try:
        # Sent first, so the client sees the stream open at once (on the chat page, before the
        # model is even asked). Inside the try: a client may leave right after it, and the
        # turn is saved then.
        yield encoder.start(run.turn)
        pump = run.pump()
        while (batch := await pump.next_batch(keepalive_seconds)) is not None:
            if not batch:
                yield encoder.keepalive()
                continue
            out = []
            for chunk in batch:
                accumulator.add(chunk)
                out.append(encoder.chunk(chunk))
            yield b"".join(out)
        outcome = (Message.Status.COMPLETED, None)
    except TurnStopped:
        outcome = (Message.Status.STOPPED, None)
    except ProviderError as exc:
        outcome = (Message.Status.FAILED, exc)
    finally:
        # Without an outcome the stream was cancelled or closed: the client went away.
        status, failure = outcome or (Message.Status.STOPPED, None)
        await run.finish(status, failure.message if failure else "")
    # Only reached when the client is still there. The turn is saved before the client hears
    # that it ended, so whoever reads it back after `done` or `error` finds it.
    yield encoder.done(accumulator, status) if failure is None else encoder.error(failure)


async def finish_turn(
    pump: ChunkPump | None,
    finished: FinishedTurn,
    release: Callable[[], Awaitable[None]] | None,
) -> None:
    """Close the model's stream, run the post-stream hooks, then release; safe from a
    second cancellation."""

    async def close_save_release() -> None:
        try:
            if pump is not None:
                await pump.close()
        finally:
            try:
                await run_post_stream_hooks(finished)
            finally:
                if release is not None:
                    await release()

    task = asyncio.create_task(close_save_release())
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)
    await asyncio.shield(task)


async def finish_unstarted_turn(
    turn: StartedTurn, release: Callable[[], Awaitable[None]] | None
) -> None:
    """Save a turn whose stream never started as stopped, and release it: the client left
    between the prompt being saved and the first event being read."""
    await finish_turn(None, TurnAccumulator().finish(turn, status=Message.Status.STOPPED), release)


class TurnEvents:
    """A turn's event stream, as a StreamingHttpResponse wants it.

    Django calls close() when the response is done, however it went. If the client left
    before the first event was read, the stream's generator never ran, and neither did the
    save in its finally block: close() then saves the turn as stopped and releases it.
    """

    def __init__(self, run: TurnRun, events: AsyncIterator[bytes]) -> None:
        self._run, self._events = run, events
        self._started = False

    def __aiter__(self) -> "TurnEvents":
        # Django calls aiter() when it builds the response, long before it reads from it.
        return self

    async def __anext__(self) -> bytes:
        self._started = True
        return await self._events.__anext__()

    def close(self) -> None:
        # Django calls this through sync_to_async, so async_to_sync reaches the event loop.
        if not self._started:
            self._started = True
            async_to_sync(self._run.finish)(Message.Status.STOPPED)


def turn_events(run: TurnRun, *, encoder: EventEncoder, keepalive_seconds: float) -> TurnEvents:
    """Return stream_turn's events, wrapped so that a stream that is never read is saved too."""
    return TurnEvents(run, stream_turn(run, encoder=encoder, keepalive_seconds=keepalive_seconds))
