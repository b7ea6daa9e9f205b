"""Read a Server-Sent Events response the way a browser does: chunk by chunk, as it arrives."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    name: str
    data: Any
    at: float  # time.monotonic() when the chunk carrying it arrived
    id: int | None = None  # the event's `id:`, which a reconnecting reader sends back


@dataclass
class Stream:
    status_code: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    @property
    def content(self) -> str:
        return "".join(e.data["content"] for e in self.named("delta"))


def parse_events(buffer: bytes, at: float) -> tuple[list[Event], bytes]:
    """Split complete events off the buffer; return them and the incomplete rest."""
    events = []
    while b"\n\n" in buffer:
        raw, buffer = buffer.split(b"\n\n", 1)
        name, data, event_id, dispatch = "message", None, None, False
        for line in raw.decode().split("\n"):
            if line.startswith(":"):  # a comment (keep-alive): kept, for tests that count them
                events.append(Event("comment", line[1:].strip(), at))
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("id:"):
                event_id = int(line[3:].strip())
            elif line.startswith("data:"):
                data, dispatch = json.loads(line[5:].strip()), True
        if dispatch:  # a block without data dispatches nothing, as in browsers
            events.append(Event(name, data, at, event_id))
    return events, buffer


def post_stream(
    client: httpx.Client,
    payload: dict,
    *,
    headers: dict | None = None,
    stop_after: int = 0,
    hang_up_after: int = 0,
) -> Stream:
    """POST a chat message and read the SSE answer. With stop_after, press Stop after that
    many delta events, as the chat page does (POST /api/turns/<id>/stop), and read on to the
    end; with hang_up_after, close the connection then instead (a reload, a closed tab)."""
    stopped = False
    with client.stream("POST", "/chat/stream/", json=payload, headers=headers) as response:
        stream = Stream(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            stream.events.append(Event("http_error", response.json(), time.monotonic()))
            return stream
        buffer = b""
        for chunk in response.iter_raw():
            now = time.monotonic()
            stream.reads.append((now, chunk))
            events, buffer = parse_events(buffer + chunk, now)
            stream.events.extend(events)
            deltas = len(stream.named("delta"))
            if hang_up_after and deltas >= hang_up_after:
                break  # leaving the `with` closes the connection mid-stream
            if stop_after and deltas >= stop_after and not stopped:
                request_id = stream.named("start")[0].data["request_id"]
                stop = client.post(f"/api/turns/{request_id}/stop")
                assert stop.status_code == 200, stop.text
                stopped = True
    return stream


class SseReader:
    """Read a response's SSE events (keep-alives left out) in parts, as a client does."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_raw()
        self._buffer = b""
        self._parsed: list[Event] = []

    def read(self, *, until_id: int = 0) -> list[Event]:
        """Return the events up to and including event `until_id`, or to the end."""
        events = []
        while True:
            while self._parsed:
                event = self._parsed.pop(0)
                if event.name == "comment":
                    continue
                events.append(event)
                if until_id and event.id == until_id:
                    return events
            chunk = next(self._chunks, None)
            if chunk is None:
                return events
            self._parsed, self._buffer = parse_events(self._buffer + chunk, time.monotonic())


def read_sse(response: httpx.Response, *, until_id: int = 0) -> list[Event]:
    return SseReader(response).read(until_id=until_id)
