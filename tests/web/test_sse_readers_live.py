"""The site's event streams, read by the SSE libraries our users' apps are built on.

httpx-sse (Python) and @microsoft/fetch-event-source (JavaScript) hand the app every event
block they read. A block of only `retry:`, or a blank line after a keep-alive comment once
an `id:` was seen, reaches the app as an event with empty data: its `json.loads` raises,
and fetch-event-source's default error handling then POSTs the message again, a second
charged answer. Each test reads a real server process over HTTP, with keep-alives flowing
(SSE_KEEPALIVE_SECONDS is 0.5 for the test server and the model pauses longer).
"""

import json
import os
import subprocess

import pytest
from httpx_sse import EventSource

from conversations.models import Conversation, Message
from tests.conftest import log_in
from tests.servers import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Five tokens 1.2 s apart: at least two keep-alives between any two of them.
SLOW_PROMPT = "[[devllm tokens=5 delay_ms=1200]] tell me slowly"


def test_httpx_sse_reads_only_json_events_through_keepalives(site, alice):
    client = log_in(site.url, "alice")

    with client.stream("POST", "/chat/stream/", json={"message": SLOW_PROMPT}) as response:
        assert response.status_code == 200
        events = list(EventSource(response).iter_sse())

    payloads = [json.loads(event.data) for event in events]  # an empty event would raise
    names = [event.event for event in events]
    assert names == ["start"] + ["delta"] * 5 + ["done"]
    assert [event.id for event in events] == [str(n) for n in range(1, 8)]
    assert events[0].retry == 2000  # the reconnect hint rides on the first event
    assert payloads[-1]["status"] == "completed"

    # Resuming through the turn's own URL reads the same way, keep-alives and all.
    request_id = payloads[0]["request_id"]
    with client.stream("GET", f"/api/turns/{request_id}/events?after=3") as response:
        resumed = list(EventSource(response).iter_sse())
    assert [json.loads(event.data) for event in resumed] == payloads[3:]


def test_fetch_event_source_posts_once_and_reads_every_event(site, alice):
    client = log_in(site.url, "alice")
    cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())

    result = subprocess.run(
        ["node", "tests/node/fetch_event_source.mjs"],
        cwd=ROOT,
        env={
            **os.environ,
            "URL": f"{site.url}/chat/stream/",
            "COOKIE": cookies,
            "CSRF_TOKEN": client.cookies["csrftoken"],
            "MESSAGE": SLOW_PROMPT,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, f"node failed:\n{result.stderr}\n{result.stdout}"
    report = json.loads(result.stdout)
    assert report["parse_errors"] == []
    assert report["posts"] == 1
    assert [event["event"] for event in report["events"]] == ["start"] + ["delta"] * 5 + ["done"]
    conversation = Conversation.objects.get(owner=alice)  # one, not one per retry
    answer = Message.objects.get(conversation=conversation, role="assistant")
    assert answer.status == Message.Status.COMPLETED
    assert answer.content == "".join(
        event["data"]["content"] for event in report["events"] if event["event"] == "delta"
    )
