"""Many streams at once from threads, each recording what its client saw."""

import threading
from dataclasses import dataclass, field

import httpx

from tests.sse_client import Event, SseReader


@dataclass
class RecordedStream:
    """One client's view of one answer: every event it received, and how its stream ended."""

    request_id: str
    status_code: int = 0
    events: list[Event] = field(default_factory=list)
    broken: str = ""  # the transport error that cut the stream, if one did
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def text(self) -> str:
        return "".join(e.data["content"] for e in self.events if e.name == "delta")

    @property
    def deltas(self) -> int:
        return sum(e.name == "delta" for e in self.events)

    @property
    def final(self) -> Event | None:
        last = self.events[-1] if self.events else None
        return last if last is not None and last.name in ("done", "error") else None


def stream_in_thread(
    base_url: str, key: str, request_id: str, message: str, *, started_after: int = 2
) -> RecordedStream:
    """POST a message to the site API as a streaming client in a thread of its own; its
    `started` is set after `started_after` deltas, `ended` when the stream ends."""
    return _record_in_thread(
        "POST",
        f"{base_url}/api/conversations/",
        {"Authorization": f"Bearer {key}", "X-Request-ID": request_id},
        RecordedStream(request_id),
        json={"message": message},
        started_after=started_after,
    )


def follow_in_thread(
    base_url: str, key: str, request_id: str, *, after: int = 0, started_after: int = 1
) -> RecordedStream:
    """Follow an answer (GET /api/turns/<id>/events) after event `after`, as a client that
    re-attaches does, in a thread of its own."""
    return _record_in_thread(
        "GET",
        f"{base_url}/api/turns/{request_id}/events?after={after}",
        {"Authorization": f"Bearer {key}"},
        RecordedStream(request_id),
        started_after=started_after,
        after=after,
    )


def _record_in_thread(
    method: str,
    url: str,
    headers: dict,
    record: RecordedStream,
    *,
    json: dict | None = None,
    started_after: int,
    after: int = 0,
) -> RecordedStream:
    def run() -> None:
        try:
            with httpx.stream(method, url, json=json, headers=headers, timeout=120) as response:
                record.status_code = response.status_code
                if response.status_code != 200:
                    response.read()
                    return
                reader = SseReader(response)
                while True:
                    events = reader.read(until_id=after + len(record.events) + 1)
                    if not events:
                        return
                    record.events.extend(events)
                    if record.deltas >= started_after:
                        record.started.set()
                    if record.final is not None:
                        return
        except httpx.TransportError as exc:
            record.broken = repr(exc)
        finally:
            record.started.set()
            record.ended.set()

    threading.Thread(target=run, daemon=True).start()
    return record
