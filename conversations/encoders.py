"""Turn the pipeline's moments into bytes on the wire: one encoder per API surface.

`SiteEventEncoder` speaks the chat page's named events; `OpenAIChunkEncoder` speaks OpenAI's
`chat.completion.chunk` stream, so any OpenAI SDK can read it; `CompletionCollector` sends
nothing and keeps the result, for non-streaming API calls. No Django in here.
"""

from typing import TYPE_CHECKING, Any, Protocol

from conversations import sse
from conversations.exceptions import ProviderError
from conversations.providers import ModelChunk
from conversations.turns import StartedTurn

if TYPE_CHECKING:
    from conversations.streaming import TurnAccumulator


class EventEncoder(Protocol):
    def start(self, turn: StartedTurn) -> bytes: ...
    def chunk(self, chunk: ModelChunk) -> bytes: ...
    def keepalive(self) -> bytes: ...
    def done(self, accumulator: "TurnAccumulator", status: str) -> bytes: ...
    def error(self, failure: ProviderError) -> bytes: ...


class SiteEventEncoder:
    """Named events for the chat page: start, reasoning, delta, done, error."""

    def start(self, turn: StartedTurn) -> bytes:
        return sse.encode_event(
            "start",
            {
                "conversation": turn.conversation_id,
                "title": turn.conversation_title,
                "user_message": turn.user_message_id,
                "assistant_message": turn.assistant_message_id,
                "request_id": turn.request_id,
                "model": turn.model.key,
                "replaces": list(turn.replaces),
            },
        )

    def chunk(self, chunk: ModelChunk) -> bytes:
        out = b""
        if chunk.reasoning:
            out += sse.encode_event("reasoning", {"content": chunk.reasoning})
        if chunk.content:
            out += sse.encode_event("delta", {"content": chunk.content})
        return out

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE

    def done(self, accumulator: "TurnAccumulator", status: str) -> bytes:
        return sse.encode_event(
            "done",
            {
                "status": status,
                "finish_reason": accumulator.finish_reason,
                "usage": accumulator.usage(),
            },
        )

    def error(self, failure: ProviderError) -> bytes:
        return sse.encode_event("error", {"status": "failed", "message": failure.message})


class OpenAIChunkEncoder:
    """OpenAI's streaming wire format: `data: {chat.completion.chunk}` lines, then [DONE]."""

    def __init__(self, *, completion_id: str, model: str, created: int, include_usage: bool):
        self.include_usage = include_usage
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        body = {
            **self._base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            body["usage"] = None
        return sse.encode_data(body)

    def start(self, turn: StartedTurn) -> bytes:
        return self._chunk({"role": "assistant", "content": ""})

    def chunk(self, chunk: ModelChunk) -> bytes:
        delta = {}
        if chunk.reasoning:
            delta["reasoning_content"] = chunk.reasoning
        if chunk.content:
            delta["content"] = chunk.content
        return self._chunk(delta) if delta else b""

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE

    def done(self, accumulator: "TurnAccumulator", status: str) -> bytes:
        # A stopped answer ends as OpenAI ends one cut short by a stop: finish reason "stop".
        out = self._chunk({}, accumulator.finish_reason or "stop")
        if self.include_usage:
            out += sse.encode_data(
                {**self._base, "choices": [], "usage": openai_usage(accumulator)}
            )
        return out + sse.DONE

    def error(self, failure: ProviderError) -> bytes:
        # The openai SDK raises APIError when a stream carries an error object.
        return sse.encode_data({"error": openai_error_body(failure)})


class CompletionCollector:
    """Send nothing while the model answers; keep the outcome for one JSON response."""

    def __init__(self) -> None:
        self.accumulator: TurnAccumulator | None = None
        self.failure: ProviderError | None = None

    def start(self, turn: StartedTurn) -> bytes:
        return b""

    def chunk(self, chunk: ModelChunk) -> bytes:
        return b""

    def keepalive(self) -> bytes:
        return b""

    def done(self, accumulator: "TurnAccumulator", status: str) -> bytes:
        self.accumulator = accumulator
        return b""

    def error(self, failure: ProviderError) -> bytes:
        self.failure = failure
        return b""


def openai_usage(accumulator: "TurnAccumulator") -> dict[str, int | None]:
    """OpenAI's usage object, honest about what is unknown: when the model reported no usage,
    the completion tokens are the chunks we counted and the prompt's are null, not zero."""
    prompt, completion = accumulator.prompt_tokens, accumulator.counted_completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": None if prompt is None else prompt + completion,
    }


def openai_error_body(failure: ProviderError) -> dict[str, str | None]:
    """The model's failure in OpenAI's error shape, keeping the upstream's param and code."""
    kind = "invalid_request_error" if failure.status < 500 else "upstream_error"
    if failure.status == 429:
        kind = "rate_limit_error"
    return {
        "message": failure.message,
        "type": kind,
        "param": failure.param,
        "code": failure.code or ("upstream_error" if failure.status >= 500 else None),
    }
