"""A turn in the shape of OpenAI's Responses API: the Response object, and its typed stream.

The runner's events (conversations.turns.events: Start, Reasoning, Delta, then Done or
Failed) become the Responses API's typed events, some one-to-many:

    start          response.created, response.in_progress, response.output_item.added,
                   response.content_part.added
    delta          response.output_text.delta
    reasoning      nothing: this surface does not relay reasoning
    done / error   response.output_text.done, response.content_part.done,
                   response.output_item.done, then response.completed, response.incomplete
                   (cut short by max_output_tokens, or cancelled) or response.failed

Each carries a `sequence_number` counted from 0 over the turn's whole event log, so the numbers
are a pure function of the log: a client resuming with `starting_after` from any process is
sent the same events with the same numbers, because its encoder reads the log from the start
and sends only what follows. A turn whose log has expired is replayed from its saved row
(events.replay), as if its text had come in one delta. No Django in here: rows are read by
their fields.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conversations import sse
from conversations.turns.events import Delta, Done, Failed, Start, TurnEvent, ending_of

# Every Response repeats these; a request's own values (its echo) replace them.
ECHO_DEFAULTS: dict[str, Any] = {
    "background": False,
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "store": True,
    "temperature": None,
    "top_p": None,
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "service_tier": None,
}
# What a finish reason that cut the answer short is called in Responses terms.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What a Response says besides its turn's events: its ids, model, creation time and
    the request's repeated fields."""

    request_id: str
    model: str
    created_at: int
    echo: dict[str, Any]

    @property
    def id(self) -> str:
        # Derived from the request ID, so any process can find the turn from it.
        return f"resp_{self.request_id}"

    @property
    def item_id(self) -> str:
        return f"msg_{self.request_id}"


def response_object(
    meta: ResponseMeta,
    *,
    status: str,
    output: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, str] | None = None,
    incomplete_reason: str | None = None,
) -> dict[str, Any]:
    """The Response object as OpenAI's SDKs parse it."""
    return {
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": meta.model,
        "output": output or [],
        "usage": usage,
        **ECHO_DEFAULTS,
        **meta.echo,
        # Fixed: no tools, plain text, no truncation (see responses_schema).
        "reasoning": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "none",
        "tools": [],
        "truncation": "disabled",
    }


def message_item(meta: ResponseMeta, text: str | None, status: str) -> dict[str, Any]:
    """The answer as an output message; `text` None for one that has no content part yet."""
    content = [] if text is None else [text_part(text)]
    return {
        "type": "message",
        "id": meta.item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def ending(final: Done | Failed) -> tuple[str, str, dict[str, str] | None, str | None]:
    """How a turn's final event ends a Response: the terminal event's type, the status, the
    error and the reason it is incomplete."""
    match final:
        case Done(status="stopped"):
            # Responses has no "cancelled" stream event: a stopped answer ends incomplete, and
            # its Response says cancelled.
            return "response.incomplete", "cancelled", None, None
        case Done(finish_reason=finish_reason):
            if reason := INCOMPLETE_REASONS.get(finish_reason):
                return "response.incomplete", "incomplete", None, reason
            return "response.completed", "completed", None, None
    # A failure upstream, or the server's own end (interrupted): the model's fault or ours,
    # never the request's, so a server error either way.
    error = {"code": "server_error", "message": final.message or "The answer failed."}
    return "response.failed", "failed", error, None


def final_response(meta: ResponseMeta, text: str, final: Done | Failed) -> dict[str, Any]:
    """The Response of a turn that ended with `final`, its answer being `text`."""
    _, status, error, reason = ending(final)
    return response_object(
        meta,
        status=status,
        output=[message_item(meta, text, "completed" if status == "completed" else "incomplete")],
        usage=final.usage.as_response() if isinstance(final, Done) else None,
        error=error,
        incomplete_reason=reason,
    )


class ResponseEventEncoder:
    """Encode a turn's events as the Responses API's typed Server-Sent Events, sending only
    those numbered above `starting_after`. Stateful: it must see the turn's events from the
    first, since each one's sequence number and the final text depend on those before."""

    content_type = "text/event-stream; charset=utf-8"

    def __init__(self, meta: ResponseMeta, *, starting_after: int = -1) -> None:
        self.meta = meta
        self._after = starting_after
        self._sequence = 0
        self._text: list[str] = []

    def encode(self, batch: Sequence[TurnEvent]) -> bytes:
        return b"".join(self._number(typed) for event in batch for typed in self._typed(event))

    def keepalive(self) -> bytes:
        return sse.KEEPALIVE

    def _number(self, typed: dict[str, Any]) -> bytes:
        sequence, self._sequence = self._sequence, self._sequence + 1
        if sequence <= self._after:
            return b""
        return sse.encode_event(typed["type"], {**typed, "sequence_number": sequence})

    def _typed(self, event: TurnEvent) -> list[dict[str, Any]]:
        meta, where = self.meta, {"output_index": 0}
        part = {**where, "item_id": meta.item_id, "content_index": 0}
        match event:
            case Start():
                started = response_object(meta, status="in_progress")
                item = message_item(meta, None, "in_progress")
                return [
                    {"type": "response.created", "response": started},
                    {"type": "response.in_progress", "response": started},
                    {"type": "response.output_item.added", **where, "item": item},
                    {"type": "response.content_part.added", **part, "part": text_part("")},
                ]
            case Delta(content=delta):
                self._text.append(delta)
                return [
                    {"type": "response.output_text.delta", **part, "delta": delta, "logprobs": []}
                ]
            case Done() | Failed():
                text = "".join(self._text)
                response = final_response(meta, text, event)
                return [
                    {"type": "response.output_text.done", **part, "text": text, "logprobs": []},
                    {"type": "response.content_part.done", **part, "part": text_part(text)},
                    {"type": "response.output_item.done", **where, "item": response["output"][0]},
                    {"type": ending(event)[0], "response": response},
                ]
        return []  # reasoning: this surface does not relay it


def row_response(meta: ResponseMeta, answer: Any) -> dict[str, Any]:
    """The Response of a saved answer: in progress while it streams (with the text of its
    last checkpoint), else as its turn ended."""
    if answer.status == "streaming":
        output = [message_item(meta, answer.content, "in_progress")] if answer.content else []
        return response_object(meta, status="in_progress", output=output)
    return final_response(meta, answer.content, ending_of(answer))
