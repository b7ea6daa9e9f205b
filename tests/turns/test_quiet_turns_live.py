"""Readers and signals in other processes survive a quiet model: Redis reads that block for
longer than redis-py's default socket timeout (5 s since redis-py 8) must not fail.

A turn runs on process A with a model that is silent for 6 s before each word; a reader follows
it through process B's events endpoint (a blocking XREAD on the event log), and a Stop sent to
B after such a silence reaches A (channels' channel layer, a blocking BZPOPMIN).
"""

import os

import pytest

from conversations.models import Message
from tests.conftest import CACHE_PREFIX, log_in
from tests.servers import devllm_record, start_sites, stop_all
from tests.sse_client import SseReader
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Two words, each after 6 s of silence.
QUIET = "[[devllm echo delay_ms=6000]] quiet words"


@pytest.fixture(scope="module")
def patient_pair(site_env, server_logs):
    env = {
        **site_env,
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-quiet",
        "LLM_READ_TIMEOUT": "20",
        "SSE_KEEPALIVE_SECONDS": "2",
    }
    sites = start_sites(server_logs, env, count=2)
    yield sites
    stop_all(sites)
    for site in sites:
        assert "Receiving turn signals failed" not in site.log(), site.log()


def test_a_reader_elsewhere_follows_a_model_silent_for_longer_than_redis_timeouts(
    patient_pair, alice
):
    running_on, read_on = patient_pair
    owner = log_in(running_on.url, "alice")
    with owner.stream(
        "POST",
        "/api/conversations/",
        json={"message": QUIET},
        headers={"X-Request-ID": "quiet-001"},
    ) as response:
        SseReader(response).read(until_id=1)
        reader = log_in(read_on.url, "alice")
        with reader.stream("GET", "/api/turns/quiet-001/events", timeout=60) as followed:
            events = SseReader(followed).read()

    assert [e.name for e in events][-1] == "done", events
    assert "".join(e.data["content"] for e in events if e.name == "delta") == "quiet words"


def test_a_stop_after_a_long_silence_reaches_the_process_running_the_turn(
    patient_pair, devllm, alice
):
    running_on, stop_on = patient_pair
    owner = log_in(running_on.url, "alice")
    with owner.stream(
        "POST",
        "/api/conversations/",
        json={"message": QUIET},
        headers={"X-Request-ID": "quiet-002"},
    ) as response:
        reader = SseReader(response)
        reader.read(until_id=2)  # the first word, then 6 s of silence: the listener waits
        stop = log_in(stop_on.url, "alice").post("/api/turns/quiet-002/stop")
        rest = reader.read()

    assert stop.status_code == 200 and stop.json()["status"] == "stopped"
    assert rest[-1].data["status"] == "stopped"
    assert Message.objects.get(request_id="quiet-002", is_answer=True).status == "stopped"
    wait_for(lambda: devllm_record(devllm, "quiet-002")["client_disconnected"], timeout=10)
