"""Answers outlive their readers: re-attaching to a turn's events, exactly, from any process;
NDJSON for clients that prefer it; the /v1 disconnect policies; and logs that expire.

Real daphne processes share one database and one Redis; the development LLM server is the
model. A reader is cut at a chosen event (a barrier in the reading loop, not luck).
"""

import json
import os
import time

import httpx
import openai
import pytest
import redis

from conversations.models import Message
from tests.conftest import CACHE_PREFIX, log_in, two_sites_sharing_redis
from tests.servers import devllm_record, start_site
from tests.sse_client import Event, SseReader, read_sse
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LONG = "[[devllm tokens=40 delay_ms=40]] Tell me about rivers, at length."
# Long enough to outlast the grace period below by far (its 68 tokens take about 4 s; the
# next one's 200 echoed words 8 s: `tokens=N` only cuts a canned answer of about 70).
LONGER = "[[devllm delay_ms=60]] Tell me about lakes, at great length."
LONGEST = "[[devllm echo delay_ms=40]] " + " ".join(f"w{i}" for i in range(200))
# Long enough that a loaded machine still checks the model inside it.
GRACE_SECONDS = 3
NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture
def key(alice, make_api_key) -> str:
    return make_api_key(alice)


@pytest.fixture
def a_and_b(site_pair):
    return site_pair


def ask_briefly(client: httpx.Client) -> list[Event]:
    """Start a conversation with a three-token answer and read it to its end."""
    body = {"message": "[[devllm tokens=3]] Hi"}
    with client.stream("POST", "/api/conversations/", json=body) as response:
        return read_sse(response)


def read_ndjson(response: httpx.Response) -> list[dict]:
    lines = [json.loads(line) for line in response.iter_lines() if line]
    return [line for line in lines if line["event"] != "keep-alive"]


def text_of(events) -> str:
    return "".join(e.data["content"] for e in events if e.name == "delta")


def follow(client: httpx.Client, request_id: str, last_event_id: int = 0) -> list[Event]:
    headers = {"Last-Event-ID": str(last_event_id)}
    with client.stream("GET", f"/api/turns/{request_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return read_sse(response)


@pytest.mark.parametrize("where", ["same process", "another process"])
def test_a_reader_cut_after_event_n_resumes_exactly_where_it_left(a_and_b, alice, where):
    a, b = a_and_b
    on_a = log_in(a.url, "alice")
    on_resume = on_a if where == "same process" else log_in(b.url, "alice")
    cut_at = 7

    with on_a.stream("POST", "/api/conversations/", json={"message": LONG}) as response:
        assert response.status_code == 200
        first = read_sse(response, until_id=cut_at)  # then hang up mid-answer
    request_id = first[0].data["request_id"]
    rest = follow(on_resume, request_id, last_event_id=cut_at)
    whole = follow(on_resume, request_id)  # an uninterrupted read, from the first event

    ids = [e.id for e in first + rest]
    assert ids == list(range(1, len(ids) + 1)), "an id is missing or repeated"
    assert [e.id for e in whole] == ids
    assert text_of(first + rest).encode() == text_of(whole).encode()
    assert (rest[-1].name, rest[-1].data["status"]) == ("done", "completed")
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert (answer.status, answer.content) == ("completed", text_of(whole))
    assert answer.completion_tokens == 40


def test_nothing_after_the_final_event_is_a_204(a_and_b, alice):
    a, _ = a_and_b
    client = log_in(a.url, "alice")
    events = ask_briefly(client)
    request_id, final = events[0].data["request_id"], events[-1].id

    after_final = client.get(
        f"/api/turns/{request_id}/events", headers={"Last-Event-ID": str(final)}
    )
    assert after_final.status_code == 204
    bad = client.get(f"/api/turns/{request_id}/events", headers={"Last-Event-ID": "seven"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "last_event_id"


def test_ndjson_from_the_send_and_the_events_endpoints(a_and_b, alice):
    a, b = a_and_b
    on_a, on_b = log_in(a.url, "alice"), log_in(b.url, "alice")
    body = {"message": "[[devllm tokens=12 delay_ms=20]] NDJSON, please."}
    with on_a.stream("POST", "/api/conversations/", json=body, headers=NDJSON) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/x-ndjson"
        sent = read_ndjson(response)
    request_id = sent[0]["data"]["request_id"]
    with on_b.stream("GET", f"/api/turns/{request_id}/events", headers=NDJSON) as response:
        assert response.headers["Content-Type"] == "application/x-ndjson"
        followed = read_ndjson(response)

    assert [line["id"] for line in sent] == list(range(1, len(sent) + 1))
    assert followed == sent
    assert [sent[0]["event"], sent[-1]["event"]] == ["start", "done"]
    content = "".join(line["data"]["content"] for line in sent if line["event"] == "delta")
    assert Message.objects.get(request_id=request_id, is_answer=True).content == content


def test_another_user_gets_404_from_the_events_and_stop_of_a_running_answer(a_and_b, alice, bob):
    a, b = a_and_b
    on_a, bobs = log_in(a.url, "alice"), log_in(b.url, "bob")
    with on_a.stream("POST", "/api/conversations/", json={"message": LONG}) as response:
        reader = SseReader(response)
        events = reader.read(until_id=3)
        request_id = events[0].data["request_id"]
        for client in (bobs, log_in(a.url, "bob")):  # on the process running it, and another
            refused = client.get(f"/api/turns/{request_id}/events")
            assert refused.status_code == 404
            assert refused.json() == {
                "error": {"message": "No such answer.", "field": "request_id"}
            }
            assert client.post(f"/api/turns/{request_id}/stop").status_code == 404
        events += reader.read()
    assert (events[-1].name, events[-1].data["status"]) == ("done", "completed")


def v1_stream_closed_after(
    site_url: str, key: str, chunks: int, prompt: str = LONG
) -> tuple[str, float]:
    """Stream a /v1 completion with the openai SDK and close it after `chunks` chunks, as an
    SDK user stops a stream; return its request ID and when it was closed."""
    sdk = openai.OpenAI(base_url=f"{site_url}/v1", api_key=key, max_retries=0)
    stream = sdk.chat.completions.create(
        model="dev/dev-chat", messages=[{"role": "user", "content": prompt}], stream=True
    )
    received = []
    for chunk in stream:
        received.append(chunk)
        if len(received) >= chunks:
            break
    stream.close()
    return received[0].id.removeprefix("chatcmpl-"), time.monotonic()


def test_v1_by_default_stops_the_model_when_its_client_closes_the_stream(site, devllm, key, alice):
    # Six seconds of answer: the model must be stopped long before it could have finished.
    six_seconds = "[[devllm echo delay_ms=40]] " + " ".join(f"w{i}" for i in range(150))
    request_id, closed_at = v1_stream_closed_after(site.url, key, 4, six_seconds)

    # Stopped, not finished: well within the answer's own length, even on a busy machine.
    record = wait_for(
        lambda: (r := devllm_record(devllm, request_id))["client_disconnected"] and r, timeout=5.0
    )
    assert not record["finished"]
    assert time.monotonic() - closed_at < 5.0
    answer = wait_for(
        lambda: (
            Message.objects.filter(request_id=request_id, is_answer=True)
            .exclude(status="streaming")
            .first()
        )
    )
    assert answer.status == "stopped" and answer.content


@pytest.fixture(scope="module")
def v1_continues(site_env, server_logs):
    """A site whose /v1 answers go on when their client leaves, and whose logs live 1 s."""
    env = {
        **site_env,
        "V1_DISCONNECT_POLICY": "continue",
        "TURN_LOG_TTL_SECONDS": "1",
        "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-continue",
    }
    server = start_site(server_logs, env)
    yield server, env
    server.stop()


@pytest.fixture(scope="module")
def v1_grace(site_env, server_logs):
    """Two processes sharing Redis whose /v1 answers wait GRACE_SECONDS for a reader to
    come back."""
    env = {**site_env, "V1_DISCONNECT_POLICY": str(GRACE_SECONDS)}
    with two_sites_sharing_redis(env, server_logs, "grace") as sites:
        yield sites


def test_v1_with_continue_finishes_and_saves_the_answer_after_its_client_left(
    v1_continues, devllm, key, alice
):
    site, _ = v1_continues
    request_id, _ = v1_stream_closed_after(site.url, key, 4)

    answer = wait_for(
        lambda: Message.objects.filter(
            request_id=request_id, is_answer=True, status="completed"
        ).first(),
        timeout=10,
    )
    assert answer.completion_tokens == 40
    record = devllm_record(devllm, request_id)
    assert record["finished"] and not record["client_disconnected"]


def test_v1_with_a_grace_period_stops_the_model_only_after_it(v1_grace, devllm, key, alice):
    request_id, _ = v1_stream_closed_after(v1_grace[0].url, key, 4, LONGEST)

    time.sleep(0.5)  # well inside the grace period: the model is still being read
    assert not devllm_record(devllm, request_id)["client_disconnected"]
    record = wait_for(
        lambda: (r := devllm_record(devllm, request_id))["client_disconnected"] and r,
        timeout=GRACE_SECONDS + 5,
    )
    assert not record["finished"]
    answer = wait_for(
        lambda: Message.objects.filter(
            request_id=request_id, is_answer=True, status="stopped"
        ).first(),
        timeout=10,  # the save after the grace period; the machine is small and shared
    )
    assert answer.content


@pytest.mark.parametrize("where", ["same process", "another process"])
def test_v1_with_a_grace_period_goes_on_for_a_reader_that_comes_back(
    v1_grace, devllm, key, alice, where
):
    running, other = v1_grace
    request_id, _ = v1_stream_closed_after(running.url, key, 4, LONGER)
    comes_back_to = running if where == "same process" else other
    back = httpx.Client(base_url=comes_back_to.url, headers={"Authorization": f"Bearer {key}"})

    # Through another process the reader is counted by a signal on the channel layer.
    events = follow(back, request_id, last_event_id=2)

    assert (events[-1].name, events[-1].data["status"]) == ("done", "completed")
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    record = devllm_record(devllm, request_id)
    assert record["finished"] and not record["client_disconnected"]
    assert answer.status == "completed" and answer.completion_tokens == record["tokens_sent"]


def test_a_finished_turns_log_expires_after_its_ttl(v1_continues, alice):
    site, env = v1_continues
    client = log_in(site.url, "alice")
    request_id = ask_briefly(client)[0].data["request_id"]
    store = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    keys = f"{env['CACHE_KEY_PREFIX']}:turnlog:{alice.pk}:{request_id}"
    assert store.exists(keys), "the finished turn's log should be readable for its TTL"
    assert follow(client, request_id)[-1].name == "done"

    wait_for(lambda: not store.exists(keys), timeout=5)
    assert not list(store.scan_iter(match=f"{env['CACHE_KEY_PREFIX']}:turnlog:*{request_id}"))
    gone = client.get(f"/api/turns/{request_id}/events")
    assert gone.status_code == 410
    assert "expired" in gone.json()["error"]["message"]
