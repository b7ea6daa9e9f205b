"""Turn a turn's numbered events into bytes on the wire: one encoder per API surface.

`SiteEventEncoder` speaks the chat page's named Server-Sent Events, each with its `id:` so
that a reader can resume; `NdjsonEncoder` the same events as one JSON object per line;
`OpenAIChunkEncoder` OpenAI's `chat.completion.chunk` stream, so any OpenAI SDK can read it.
The events are the runner's, typed (conversations.turns.events): the first two encoders
write every event's name and data as they are; the OpenAI ones match on the class. No
Django in here.
"""

from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from conversations import sse
from conversations.exceptions import ProviderError
from conversations.turns.events import Delta, Done, Failed, Reasoning, Start, TurnEvent

# How long an EventSource waits before reconnecting after a dropped connection.
RETRY_MILLISECONDS = 2000


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
        return b"".join(self._encode(event) for event in batch)

    def _encode(self, event: TurnEvent) -> bytes:
        match event:
            case Delta(content=content):
                return self._chunk({"content": content})
            case Reasoning(content=content):
                return self._chunk({"reasoning_content": content})
            case Start():
                return self._chunk({"role": "assistant", "content": ""})
            case Done(finish_reason=reason, usage=usage):
                # A stopped answer ends as OpenAI ends one cut short by a stop: reason "stop".
                out = self._chunk({}, reason or "stop")
                if self.include_usage:
                    body = {**self._base, "choices": [], "usage": usage.as_chat_completion()}
                    out += sse.encode_data(body)
                return out + sse.DONE
            case Failed():
                # The openai SDK raises APIError when a stream carries an error object.
                return sse.encode_data({"error": failed_body(event)})
        return b""

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE


def failed_body(event: Failed) -> dict[str, str | None]:
    """A turn's failure event in OpenAI's error shape."""
    return openai_error_body(
        message=event.message,
        status=event.http_status or 502,
        param=event.param,
        code=event.code,
    )


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
