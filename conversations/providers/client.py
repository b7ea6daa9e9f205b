"""Stream chat completions from one OpenAI-compatible endpoint.

The SDK's typed chunk objects are the main CPU cost of a proxied stream, so this client keeps
the SDK for base URL, auth, retries and error mapping, but reads the raw bytes of
`with_streaming_response` (see providers.sse) and parses each event with orjson.

Upstreams differ from OpenAI in ways that must not turn into an empty "completed" answer: an
HTML page or a whole JSON completion where a stream was asked, no usage, a refusal of
`stream_options`, finish reasons of their own, a stream that just stops. Each ends here as a
complete answer or as a ProviderError with the upstream's reason.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
import openai
import orjson

from conversations.exceptions import ProviderError, upstream_reason
from conversations.providers.config import Endpoint
from conversations.providers.sse import SSEDecoder


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(slots=True)
class ModelChunk:
    """The part of one streamed chunk that chatsite uses."""

    response_id: str = ""
    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


# Finish reasons of other APIs and servers, as the OpenAI value a client understands.
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "max_tokens": "length",
    "max_length": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "safety": "content_filter",
    "recitation": "content_filter",
    "refusal": "content_filter",
}
# An empty answer is still an answer when its finish reason explains it.
EXPLAINED_EMPTY = ("length", "content_filter")


def finish_reason_of(raw: object) -> str | None:
    """Map an upstream's finish reason to one of OpenAI's; an unknown one means "stop"."""
    if not raw or not isinstance(raw, str):
        return None
    return FINISH_REASONS.get(raw.lower(), "stop")


def parse_chunk(payload: bytes | str) -> ModelChunk:
    """Turn one event's data into a ModelChunk, raising ProviderError for errors and junk."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderError("The model sent a malformed response.") from None
    if not isinstance(data, dict):
        raise ProviderError("The model sent a malformed response.")
    if "error" in data:
        reason = upstream_reason(data["error"]) or "unknown error"
        raise ProviderError(f"The model failed while answering: {reason}")
    chunk = ModelChunk(response_id=data.get("id") or "")
    choices = data.get("choices") or ()
    if choices:
        choice = choices[0]
        # A whole completion has a message where a chunk has a delta.
        delta = choice.get("delta") or choice.get("message") or {}
        chunk.content = delta.get("content") or ""
        # DeepSeek-style reasoning models send their thinking as an extra delta field.
        chunk.reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        chunk.finish_reason = finish_reason_of(choice.get("finish_reason"))
    usage = data.get("usage")
    if usage:
        chunk.usage = Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return chunk


class AnswerCheck:
    """Watch a stream's chunks, and refuse to call it complete when it is not."""

    def __init__(self) -> None:
        self.answered = False
        self.finish_reason: str | None = None

    def saw(self, chunk: ModelChunk) -> None:
        self.answered = self.answered or bool(chunk.content or chunk.reasoning)
        self.finish_reason = chunk.finish_reason or self.finish_reason

    def ended(self, *, done: bool) -> None:
        """Raise ProviderError unless the stream ended as a whole answer."""
        if self.answered or self.finish_reason in EXPLAINED_EMPTY:
            if done or self.finish_reason:
                return
            raise ProviderError("The model's stream ended before its answer was complete.")
        raise ProviderError("The model's endpoint sent an empty answer.")


# The longest wait before a retry the user does not see: a retry happens before the first
# token, while the user looks at a waiting indicator.
MAX_HIDDEN_RETRY_SECONDS = 1.0
# How long an answer's end waits, after [DONE], for the upstream's body to end.
AFTER_DONE_SECONDS = 0.5


class _RetryingBriefly(openai.AsyncOpenAI):
    """The SDK's client, retrying only what is worth a short, unseen wait.

    Left to itself, the SDK retries a 429 (and a 5xx) after the upstream's Retry-After, up to a
    minute: the user waited 7.5 s for a retry that failed again, then was told to wait 7 s
    more. An upstream's rate limit is now told at once, with its Retry-After, and no retry waits
    longer than MAX_HIDDEN_RETRY_SECONDS (a connection that failed, a 5xx that asked for no
    longer wait). The SDK's own hooks are overridden: its options have no such policy.
    """

    def _should_retry(self, response: httpx2.Response) -> bool:
        if response.status_code == 429:
            return False
        retry_after = self._parse_retry_after_header(response.headers)
        if retry_after is not None and retry_after > MAX_HIDDEN_RETRY_SECONDS:
            return False
        return super()._should_retry(response)

    def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
        return min(super()._calculate_retry_timeout(*args, **kwargs), MAX_HIDDEN_RETRY_SECONDS)


class ChatModelClient:
    """One endpoint's client; create it once and reuse it, since it pools connections."""

    def __init__(self, endpoint: Endpoint, *, max_connections: int = 200) -> None:
        self.endpoint = endpoint
        # Models that refused `stream_options` once (older servers); they are not sent it again.
        self._refuse_stream_options: set[str] = set()
        self._sdk = _RetryingBriefly(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "missing",
            max_retries=endpoint.max_retries,
            timeout=openai.Timeout(endpoint.read_timeout, connect=endpoint.connect_timeout),
            # The SDK's aiohttp transport: aiohttp parses HTTP in C, where httpx's own
            # transport spends more CPU on a streamed answer than the rest of the turn's reading.
            http_client=openai.DefaultAioHttpClient(
                # The default keep-alive pool is too small for many concurrent streams.
                limits=httpx2.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            ),
        )

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, Any]], request_id: str, **params: Any
    ) -> AsyncIterator[ModelChunk]:
        """Yield the model's chunks; closing this generator closes the upstream connection.

        `params` go into the request body as given. Every failure surfaces as ProviderError
        with a message a person can read.
        """
        request = {
            "model": model,
            "messages": messages,
            "stream": True,
            "extra_headers": {"X-Request-ID": request_id},
            "extra_body": params,
        }
        answered = False
        try:
            async with AsyncExitStack() as stack:
                # The read timeout is the longest silence allowed, the SDK's retries included:
                # without this bound, a model that never answers costs (retries + 1) of them.
                async with asyncio.timeout(self.endpoint.read_timeout):
                    response = await self._open(stack, request)
                chunks = await stack.enter_async_context(aclosing(_answer_chunks(response)))
                async for chunk in chunks:
                    answered = answered or bool(chunk.content or chunk.reasoning)
                    yield chunk
        except openai.APIStatusError as exc:
            raise ProviderError.from_status(
                exc.status_code, exc.response.headers, exc.body
            ) from exc
        except openai.APIConnectionError as exc:
            if isinstance(exc, openai.APITimeoutError) and not _refused(exc):
                raise ProviderError("The model did not answer in time.", status=504) from exc
            raise ProviderError("The model could not be reached.", status=503) from exc
        except TimeoutError as exc:
            raise ProviderError("The model did not answer in time.", status=504) from exc
        except httpx2.TimeoutException as exc:
            if not answered:  # silent since its headers: too slow to answer, as a gateway says
                raise ProviderError("The model did not answer in time.", status=504) from exc
            raise ProviderError("The model stopped sending its answer (timed out).") from exc
        except httpx2.TransportError as exc:
            raise ProviderError("The connection to the model broke off mid-answer.") from exc

    async def _open(self, stack: AsyncExitStack, request: dict[str, Any]) -> Any:
        """Send the request and return the upstream's streaming response (headers read).

        Asked again without `stream_options` when the endpoint refuses it, as some older
        OpenAI-compatible servers do; the answer then comes without usage."""
        create = self._sdk.chat.completions.with_streaming_response.create
        if request["model"] not in self._refuse_stream_options:
            try:
                return await stack.enter_async_context(
                    create(**request, stream_options={"include_usage": True})
                )
            except openai.BadRequestError as exc:
                if "stream_options" not in str(exc.body):
                    raise
                self._refuse_stream_options.add(request["model"])
        return await stack.enter_async_context(create(**request))

    def prepare(self) -> None:
        """Do now what the first request would otherwise do: the SDK imports its chat
        resources on first use (a tenth of a second here, more on a busy machine)."""
        self._sdk.chat.completions.with_streaming_response.create  # noqa: B018

    async def aclose(self) -> None:
        await self._sdk.close()


def _refused(exc: BaseException) -> bool:
    """Whether a "timeout" was in fact a connection that could not be made: the SDK's aiohttp
    transport maps every aiohttp connection error, a refusal included, to a connect timeout."""
    while exc is not None:
        if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
            exc, aiohttp.ServerTimeoutError
        ):
            return True
        exc = exc.__cause__
    return False


async def _answer_chunks(response: Any) -> AsyncIterator[ModelChunk]:
    """Read the upstream's answer, whatever it sent: an event stream, a whole JSON completion,
    or a web page; raise ProviderError unless it was a whole answer."""
    content_type = response.headers.get("content-type", "").lower()
    check = AnswerCheck()
    if "json" in content_type:
        chunk = parse_chunk(await response.read())
        check.saw(chunk)
        yield chunk
        check.ended(done=True)
        return
    if "html" in content_type:
        page = upstream_reason(await response.read())
        raise ProviderError(
            "The model's endpoint answered with a web page, not a stream"
            + (f": {page}" if page else ".")
        )
    decoder = SSEDecoder()
    body = response.iter_bytes()
    async for raw in body:
        for data in decoder.feed(raw):
            if data.strip() == b"[DONE]":
                check.ended(done=True)
                await _read_to_end(body)
                return
            chunk = parse_chunk(data)
            check.saw(chunk)
            yield chunk
    for data in decoder.end():
        if data.strip() != b"[DONE]":
            chunk = parse_chunk(data)
            check.saw(chunk)
            yield chunk
    check.ended(done=False)


async def _read_to_end(body: AsyncIterator[bytes]) -> None:
    """Read what follows [DONE], normally just the body's end, already on its way. A response
    read to its end gives its connection back to the pool for the next answer; one closed
    before (as a busy machine would, reading [DONE] before the end arrived) closes it, and
    the next answer pays a new handshake. An upstream that sends more is not waited for."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(AFTER_DONE_SECONDS):
            async for _ in body:
                pass


class PrefetchedStream:
    """A model stream whose request goes out now, before anyone reads it: the model is asked
    while the turn's prompt is being saved. Its first chunk (the request sent, the headers
    and the first event read) is awaited in a task of its own; iterating returns it, then the
    rest. Closing it cancels that task if it is still waiting, which closes the upstream
    connection: the model stops generating."""

    def __init__(self, chunks: AsyncIterator[ModelChunk]) -> None:
        self._chunks = chunks
        self.asked_at = time.monotonic()  # the turn's timings count from here
        self._first: asyncio.Task | None = asyncio.ensure_future(anext(chunks, None))

    def __aiter__(self) -> "PrefetchedStream":
        return self

    async def __anext__(self) -> ModelChunk:
        if self._first is None:
            return await anext(self._chunks)
        first, self._first = self._first, None
        chunk = await first
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            first.cancel()
            await asyncio.wait([first])
            if not first.cancelled():
                first.exception()  # a failure nobody will read: marked as retrieved
        await self._chunks.aclose()  # type: ignore[attr-defined]
