"""A reader whose event log fails it still hears how its stream ended: an `error` event of its
own, without an id (nothing follows it to resume from), in each wire format."""

import asyncio

import orjson

from conversations.turns.encoders import NdjsonEncoder, SiteEventEncoder
from conversations.turns.eventlog import TurnLogUnavailable
from conversations.turns.events import Delta, Start
from conversations.turns.readers import TurnStream
from tests.sse_client import parse_events


async def failing_log():
    yield [Start(id=1, request_id="r"), Delta(id=2, content="Hi")]
    raise TurnLogUnavailable("The turn's events cannot be read right now.")


def read_all(encoder) -> list[bytes]:
    async def scenario() -> list[bytes]:
        return [chunk async for chunk in TurnStream(failing_log(), encoder)]

    return asyncio.run(scenario())


def test_a_reader_whose_log_fails_ends_with_an_error_event_without_an_id():
    chunks = read_all(SiteEventEncoder())

    events, rest = parse_events(b"".join(chunks), 0)
    assert rest == b""
    assert [(e.id, e.name) for e in events] == [(1, "start"), (2, "delta"), (None, "error")]
    assert events[-1].data["status"] == "unavailable"
    assert "not lost" in events[-1].data["message"]


def test_the_same_end_reaches_an_ndjson_reader():
    lines = [orjson.loads(line) for line in b"".join(read_all(NdjsonEncoder())).splitlines()]

    assert [(line["id"], line["event"]) for line in lines][-1] == (None, "error")
    assert lines[-1]["data"]["code"] == "events_unavailable"
