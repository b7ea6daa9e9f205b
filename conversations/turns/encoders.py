"""Turn a turn's numbered events into bytes on the wire: one encoder per API surface.

`SiteEventEncoder` speaks the chat page's named Server-Sent Events, each with its `id:` so
that a reader can resume; `NdjsonEncoder` the same events as one JSON object per line;
`OpenAIChunkEncoder` OpenAI's `chat.completion.chunk` stream, so any OpenAI SDK can read it.
The events are the runner's (see streaming.TurnRun): start, reasoning, delta, done, error.
No Django in here.
"""

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from conversations import sse
from conversations.exceptions import ProviderError
from conversations.turns.eventlog import TurnEvent

# How long an EventSource waits before reconnecting after a dropped connection.
RETRY_MILLISECONDS = 2000
# On a whole (non-streamed) OpenAI-shaped answer whose usage is our estimate, not the model's.
USAGE_ESTIMATED_HEADER = "X-Usage-Estimated"


class EventEncoder(Protocol):
    content_type: str

    def encode(self, batch: Sequence[TurnEvent]) -> bytes: ...
    def keepalive(self) -> bytes: ...


class SiteEventEncoder:
    """Named events with ids for the chat page, the site API and EventSource: start,
    reasoning, delta, done, error. The first event's block carries a `retry:` hint."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self) -> None:
        self._opening = sse.encode_retry(RETRY_MILLISECONDS)

    def encode(self, batch: Sequence[TurnEvent]) -> bytes:
        out = b"".join(sse.encode_event(e.name, e.data, id=e.id) for e in batch)
        if self._opening:
            out, self._opening = self._opening + out, b""
        return out

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE


class NdjsonEncoder:
    """The same events as one JSON object per line: {"id", "event", "data"}. While the
    model is silent, a `{"event": "keep-alive"}` line (no id) keeps proxies from timing out."""

    content_type = "application/x-ndjson"

    def encode(self, batch: Sequence[TurnEvent]) -> bytes:
        return b"".join(
            orjson.dumps({"id": e.id, "event": e.name, "data": e.data}) + b"\n" for e in batch
        )

    def keepalive(self) -> bytes:
        return b'{"event":"keep-alive"}\n'


class OpenAIChunkEncoder:
    """OpenAI's streaming wire format: `data: {chat.completion.chunk}` lines, then [DONE]."""

    content_type = "text/event-stream; charset=utf-8"

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

    def encode(self, batch: Sequence[TurnEvent]) -> bytes:
        return b"".join(self._encode(event.name, event.data) for event in batch)

    def _encode(self, name: str, data: dict[str, Any]) -> bytes:
        if name == "delta":
            return self._chunk({"content": data["content"]})
        if name == "reasoning":
            return self._chunk({"reasoning_content": data["content"]})
        if name == "start":
            return self._chunk({"role": "assistant", "content": ""})
        if name == "done":
            # A stopped answer ends as OpenAI ends one cut short by a stop: reason "stop".
            out = self._chunk({}, data["finish_reason"] or "stop")
            if self.include_usage:
                usage = openai_usage(**data["usage"])
                out += sse.encode_data({**self._base, "choices": [], "usage": usage})
            return out + sse.DONE
        if name == "error":
            # The openai SDK raises APIError when a stream carries an error object.
            return sse.encode_data({"error": openai_error_body(**_failure_fields(data))})
        return b""

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE


def _failure_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": data["message"],
        "status": data.get("http_status") or 502,
        "param": data.get("param"),
        "code": data.get("code"),
    }


def openai_usage(
    *, prompt_tokens: int | None, completion_tokens: int | None, reported: bool = True, **_: Any
) -> dict[str, Any]:
    """OpenAI's usage object, in integers as its SDKs' types require. Where the model reported
    no usage the counts are ours (the prompt estimated, the completion's chunks counted), and
    the object says so with `"estimated": true`, a field those types let through. The one
    rule for every OpenAI shape (the Responses API's too: response_usage)."""
    # None only in events logged before estimates were sent, or in rows saved before counts.
    prompt, completion = prompt_tokens or 0, completion_tokens or 0
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if not reported:
        usage["estimated"] = True
    return usage


def usage_headers(*, reported: bool) -> dict[str, str]:
    """The header that tells a whole answer's reader its usage is our estimate."""
    return {} if reported else {USAGE_ESTIMATED_HEADER: "true"}


def openai_error_body(
    *, message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, str | None]:
    """A model's failure in OpenAI's error shape, keeping the upstream's param and code."""
    kind = "invalid_request_error" if status < 500 else "upstream_error"
    if status == 429:
        kind = "rate_limit_error"
    return {
        "message": message,
        "type": kind,
        "param": param,
        "code": code or ("upstream_error" if status >= 500 else None),
    }


def openai_failure_body(failure: ProviderError) -> dict[str, str | None]:
    return openai_error_body(
        message=failure.message, status=failure.status, param=failure.param, code=failure.code
    )
