"""Encode Server-Sent Events. Pure functions: no web framework in here."""

from typing import Any

import orjson

# A keep-alive is one comment line with no blank line after it. The blank line would end an
# event block, and readers that keep the last event's id across blocks (httpx-sse, the
# openai SDK's decoder) then hand the app an event with empty data; the spec says an
# empty block dispatches nothing, but not every reader follows it. A lone comment line is
# ignored by all of them, and the next event's block simply starts after it.
KEEPALIVE = b": keep-alive\n"
DONE = b"data: [DONE]\n\n"


def encode_event(event: str, data: Any, *, id: int | None = None) -> bytes:
    """Encode one named event whose data is JSON (JSON never contains a raw newline); with an
    `id`, a client that reconnects sends it back as Last-Event-ID."""
    head = b"" if id is None else b"id: %d\n" % id
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def encode_retry(milliseconds: int) -> bytes:
    """Tell an EventSource how long to wait before it reconnects: a `retry:` line to put at
    the head of an event's block. Never a block of its own: readers such as httpx-sse and
    fetch-event-source hand such a block to the app as an event with empty data."""
    return b"retry: %d\n" % milliseconds


def encode_data(data: Any) -> bytes:
    """Encode an unnamed event, as OpenAI's streams use."""
    return b"data: " + orjson.dumps(data) + b"\n\n"
