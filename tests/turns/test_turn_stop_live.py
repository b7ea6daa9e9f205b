"""Stop is an explicit request that works from any server process, over real HTTP.

Two daphne processes share one database and one Redis; an answer streams from process A, and
POST /api/turns/<request_id>/stop goes to process B. channels' channel layer carries it to A,
which closes the model's stream, saves the partial answer as stopped, and ends its reader's
stream with a `done` event whose status is stopped.
"""

import threading
import time

import httpx
import pytest

from conversations.models import Message
from tests.conftest import log_in
from tests.servers import devllm_record
from tests.sse_client import SseReader, parse_events
from tests.waiting import wait_for


def model_saw(devllm, request_id: str) -> dict | None:
    """The development server's record of a request, or None if it never got one."""
    response = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}")
    return response.json() if response.status_code == 200 else None


pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LONG_ANSWER = "[[devllm delay_ms=60]] Tell me a long story about rivers."


@pytest.fixture
def process_a_and_b(site_pair):
    return site_pair


def read_until(response, deltas: int) -> list:
    """Read a chat stream until `deltas` delta events have come; return the events so far."""
    buffer, events = b"", []
    for chunk in response.iter_raw():
        parsed, buffer = parse_events(buffer + chunk, time.monotonic())
        events.extend(parsed)
        if sum(e.name == "delta" for e in events) >= deltas:
            break
    return events


def test_a_stop_sent_to_another_process_stops_the_model_at_once(process_a_and_b, devllm, alice):
    a, b = process_a_and_b
    on_a, on_b = log_in(a.url, "alice"), log_in(b.url, "alice")
    events, stop = [], {}

    def stop_from_b(request_id: str) -> None:
        stop["sent_at"] = time.monotonic()
        stop["response"] = on_b.post(f"/api/turns/{request_id}/stop")

    with on_a.stream(
        "POST", "/chat/stream/", json={"message": LONG_ANSWER, "model": "dev/dev-chat"}
    ) as response:
        buffer, stopper = b"", None
        for chunk in response.iter_raw():
            parsed, buffer = parse_events(buffer + chunk, time.monotonic())
            events.extend(parsed)
            deltas = [e for e in events if e.name == "delta"]
            if stopper is None and len(deltas) >= 3:
                request_id = events[0].data["request_id"]
                stopper = threading.Thread(target=stop_from_b, args=(request_id,))
                stopper.start()
    stopper.join()

    # The model saw its client go within a second of the Stop.
    record = wait_for(
        lambda: (r := devllm_record(devllm, request_id))["client_disconnected"] and r, timeout=3
    )
    assert not record["finished"]
    assert record["tokens_sent"] < 60
    # The reader's stream ended with the stopped done event, after all it was sent.
    assert events[-1].name == "done" and events[-1].data["status"] == "stopped"
    assert stop["response"].status_code == 200
    assert stop["response"].json() == {"request_id": request_id, "status": "stopped"}
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    streamed = "".join(e.data["content"] for e in events if e.name == "delta")
    assert (answer.status, answer.content) == ("stopped", streamed)
    assert streamed and answer.completion_tokens >= 3


def test_the_model_hears_the_stop_within_a_second(process_a_and_b, devllm, alice):
    a, b = process_a_and_b
    on_a, on_b = log_in(a.url, "alice"), log_in(b.url, "alice")
    seen_at = {}

    def watch(request_id: str) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if devllm_record(devllm, request_id)["client_disconnected"]:
                seen_at["left"] = time.monotonic()
                return
            time.sleep(0.02)

    with on_a.stream(
        "POST", "/chat/stream/", json={"message": LONG_ANSWER, "model": "dev/dev-chat"}
    ) as response:
        request_id = read_until(response, 2)[0].data["request_id"]
        watcher = threading.Thread(target=watch, args=(request_id,))
        watcher.start()
        sent_at = time.monotonic()
        assert on_b.post(f"/api/turns/{request_id}/stop").status_code == 200
        watcher.join()

    assert "left" in seen_at, "the development LLM server never saw its client go"
    assert seen_at["left"] - sent_at < 1.0


def test_stopping_an_answer_that_ended_changes_nothing(process_a_and_b, alice):
    a, _ = process_a_and_b
    client = log_in(a.url, "alice")
    with client.stream(
        "POST", "/chat/stream/", json={"message": "[[devllm tokens=3]] Hi", "model": "dev/dev-chat"}
    ) as response:
        response.read()
    answer = wait_for(lambda: Message.objects.filter(is_answer=True, status="completed").first())

    response = client.post(f"/api/turns/{answer.request_id}/stop")

    assert response.json() == {"request_id": answer.request_id, "status": "completed"}
    answer.refresh_from_db()
    assert answer.status == "completed"


def test_another_user_cannot_stop_an_answer(process_a_and_b, alice, bob):
    a, b = process_a_and_b
    on_a, bobs = log_in(a.url, "alice"), log_in(b.url, "bob")
    with on_a.stream(
        "POST", "/chat/stream/", json={"message": LONG_ANSWER, "model": "dev/dev-chat"}
    ) as response:
        request_id = read_until(response, 1)[0].data["request_id"]
        refused = bobs.post(f"/api/turns/{request_id}/stop")

    assert refused.status_code == 404
    assert refused.json() == {"error": {"message": "No such answer.", "field": "request_id"}}
    assert bobs.post("/api/turns/no-such-request/stop").status_code == 404


def test_a_stop_ends_every_readers_stream_with_the_stopped_done_event(
    process_a_and_b, devllm, alice
):
    """Readers on both processes (the response that started the answer on A, a re-attached
    one on B, reading the Redis log) all end with `done` / stopped, and the same text."""
    a, b = process_a_and_b
    on_a, on_b = log_in(a.url, "alice"), log_in(b.url, "alice")
    followed, attached = {}, threading.Event()

    def follow_on_b(request_id: str) -> None:
        with on_b.stream("GET", f"/api/turns/{request_id}/events") as response:
            buffer, events = b"", []
            for chunk in response.iter_raw():
                parsed, buffer = parse_events(buffer + chunk, time.monotonic())
                events.extend(e for e in parsed if e.name != "comment")
                if events:
                    attached.set()
            followed["events"] = events

    with on_a.stream(
        "POST", "/chat/stream/", json={"message": LONG_ANSWER, "model": "dev/dev-chat"}
    ) as response:
        on_a_reader = SseReader(response)
        events = on_a_reader.read(until_id=3)
        request_id = events[0].data["request_id"]
        reader = threading.Thread(target=follow_on_b, args=(request_id,))
        reader.start()
        assert attached.wait(timeout=10), "the reader on B never got an event"
        assert on_b.post(f"/api/turns/{request_id}/stop").json()["status"] == "stopped"
        events += on_a_reader.read()
    reader.join(timeout=10)

    on_b_events = followed["events"]
    for seen in (events, on_b_events):
        assert (seen[-1].name, seen[-1].data["status"]) == ("done", "stopped")
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert answer.status == "stopped"
    assert "".join(e.data["content"] for e in on_b_events if e.name == "delta") == answer.content
    assert [e.id for e in on_b_events] == list(range(1, len(on_b_events) + 1))


@pytest.mark.parametrize("where", ["same process", "another process"])
def test_a_stop_that_overtakes_its_request_stops_the_answer_as_it_starts(
    process_a_and_b, devllm, alice, bob, where
):
    """A page chose the request ID and pressed Stop before its request reached the server."""
    a, b = process_a_and_b
    on_a = log_in(a.url, "alice")
    stopping = on_a if where == "same process" else log_in(b.url, "alice")
    request_id = "page-chosen-0123456789abcdef"

    early = stopping.post(f"/api/turns/{request_id}/stop")
    time.sleep(0.2)  # the Stop crosses to the other process through the channel layer
    with on_a.stream(
        "POST",
        "/chat/stream/",
        json={"message": LONG_ANSWER, "model": "dev/dev-chat"},
        headers={"X-Request-ID": request_id},
    ) as response:
        events = SseReader(response).read()

    assert early.status_code == 404  # not found (yet), as an unknown answer always is
    assert [e.name for e in events] == ["start", "done"]
    assert events[0].data["request_id"] == request_id
    assert events[-1].data["status"] == "stopped"
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert (answer.status, answer.content) == ("stopped", "")
    # The user's message is kept; the model was never asked, or was hung up on at once.
    assert Message.objects.get(request_id=request_id, role="user").content == LONG_ANSWER
    record = model_saw(devllm, request_id)
    assert record is None or not record["finished"]


def test_another_users_early_stop_does_not_reach_an_answer_with_that_id(
    process_a_and_b, alice, bob
):
    a, b = process_a_and_b
    request_id = "guessed-by-bob-0123456789"
    assert log_in(b.url, "bob").post(f"/api/turns/{request_id}/stop").status_code == 404
    time.sleep(0.2)

    with log_in(a.url, "alice").stream(
        "POST",
        "/chat/stream/",
        json={"message": "[[devllm tokens=5]] Hello"},
        headers={"X-Request-ID": request_id},
    ) as response:
        events = SseReader(response).read()

    assert (events[-1].name, events[-1].data["status"]) == ("done", "completed")
