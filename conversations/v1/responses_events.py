"""A turn in the shape of OpenAI's Responses API: the Response object, and its typed stream.

The runner's events (streaming.TurnRun: start, reasoning, delta, then done or error) become
typed events, some one-to-many:

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
and sends only what follows. A turn whose log has expired is replayed from its saved row, as if
its text had come in one delta. No Django in here: rows are read by their fields.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conversations import sse
from conversations.turns.encoders import openai_usage
from conversations.turns.eventlog import TurnEvent

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
        # Fixed: no tools, plain text, no truncation (see openai_responses_schema).
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


def response_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """The runner's usage in Responses terms, by the rule of /v1/chat/completions
    (encoders.openai_usage): integers, with `"estimated": true` where the counts are ours."""
    counted = openai_usage(**usage)
    shaped: dict[str, Any] = {
        "input_tokens": counted["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": counted["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": counted["total_tokens"],
    }
    if counted.get("estimated"):
        shaped["estimated"] = True
    return shaped


def ending(final: TurnEvent) -> tuple[str, str, dict[str, str] | None, str | None]:
    """How a turn's final event ends a Response: the terminal event's type, the status, the
    error and the reason it is incomplete."""
    data = final.data
    if final.name == "done":
        if data.get("status") == "stopped":
            # Responses has no "cancelled" stream event: a stopped answer ends incomplete, and
            # its Response says cancelled.
            return "response.incomplete", "cancelled", None, None
        if reason := INCOMPLETE_REASONS.get(data.get("finish_reason") or ""):
            return "response.incomplete", "incomplete", None, reason
        return "response.completed", "completed", None, None
    # A failure upstream, or the server's own end (interrupted): the model's fault or ours,
    # never the request's, so a server error either way.
    error = {"code": "server_error", "message": data.get("message") or "The answer failed."}
    return "response.failed", "failed", error, None


def final_response(meta: ResponseMeta, text: str, final: TurnEvent) -> dict[str, Any]:
    """The Response of a turn that ended with `final`, its answer being `text`."""
    _, status, error, reason = ending(final)
    usage = final.data.get("usage") if final.name == "done" else None
    return response_object(
        meta,
        status=status,
        output=[message_item(meta, text, "completed" if status == "completed" else "incomplete")],
        usage=response_usage(usage) if usage else None,
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
        if event.name == "start":
            started = response_object(meta, status="in_progress")
            return [
                {"type": "response.created", "response": started},
                {"type": "response.in_progress", "response": started},
                {
                    "type": "response.output_item.added",
                    **where,
                    "item": message_item(meta, None, "in_progress"),
                },
                {"type": "response.content_part.added", **part, "part": text_part("")},
            ]
        if event.name == "delta":
            self._text.append(event.data["content"])
            delta = event.data["content"]
            return [{"type": "response.output_text.delta", **part, "delta": delta, "logprobs": []}]
        if event.name not in ("done", "error"):
            return []  # reasoning
        text = "".join(self._text)
        response = final_response(meta, text, event)
        return [
            {"type": "response.output_text.done", **part, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **part, "part": text_part(text)},
            {"type": "response.output_item.done", **where, "item": response["output"][0]},
            {"type": ending(event)[0], "response": response},
        ]


# --- a saved row in the same shapes -------------------------------------------------------


def row_final_event(answer: Any) -> TurnEvent:
    """The final event a finished answer's row stands for (its log having expired)."""
    if answer.status in ("completed", "stopped"):
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "reported": answer.usage_reported,
        }
        data = {"status": answer.status, "finish_reason": answer.finish_reason, "usage": usage}
        return TurnEvent(0, "done", data, final=True)
    return TurnEvent(0, "error", {"status": answer.status, "message": answer.error}, final=True)


def row_events(answer: Any) -> list[TurnEvent]:
    """A finished answer's row as a turn's events: start, its text in one delta, the end."""
    events = [TurnEvent(1, "start", {"request_id": answer.request_id})]
    if answer.content:
        events.append(TurnEvent(2, "delta", {"content": answer.content}))
    final = row_final_event(answer)
    return [*events, TurnEvent(len(events) + 1, final.name, final.data, final=True)]


def row_response(meta: ResponseMeta, answer: Any) -> dict[str, Any]:
    """The Response of a saved answer: in progress while it streams (with the text of its
    last checkpoint), else as its turn ended."""
    if answer.status == "streaming":
        output = [message_item(meta, answer.content, "in_progress")] if answer.content else []
        return response_object(meta, status="in_progress", output=output)
    return final_response(meta, answer.content, row_final_event(answer))
