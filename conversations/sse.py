"""Encode Server-Sent Events. Pure functions: no web framework in here."""

from typing import Any

import orjson

KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def encode_event(event: str, data: Any, *, id: int | None = None) -> bytes:
    """Encode one named event whose data is JSON (JSON never contains a raw newline); with an
    `id`, a client that reconnects sends it back as Last-Event-ID."""
    head = b"" if id is None else b"id: %d\n" % id
    return head + b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def encode_retry(milliseconds: int) -> bytes:
    """Tell an EventSource how long to wait before it reconnects."""
    return b"retry: %d\n\n" % milliseconds


def encode_data(data: Any) -> bytes:
    """Encode an unnamed event, as OpenAI's streams use."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


def encode_comment(text: str) -> bytes:
    """Encode a comment line, which clients ignore; used to open the stream and keep it alive."""
    return b": " + text.replace("\n", " ").encode() + b"\n\n"
