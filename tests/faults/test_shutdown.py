"""A deploy (SIGTERM) or a crash (SIGKILL) while 20 answers stream: no turn is lost or
mislabelled, no stream slot leaks, and the user can go on at once.

Real server processes (daphne; the SIGTERM drain under uvicorn too, the production server)
on the shared test database and Redis; only the server processes are stopped and killed.
"""

import os
import signal
import time

import httpx
import pytest
import redis

from conversations.accounts.leases import RedisStreamLeases
from conversations.models import Message
from tests.conftest import CACHE_PREFIX
from tests.faults.streams import stream_in_thread
from tests.servers import start_site, start_sites
from tests.sse_client import SseReader

pytestmark = [pytest.mark.faults, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SHORT = "[[devllm tokens=15 delay_ms=100]] A short one."  # about 1.5 s
LONG = "[[devllm tokens=300 delay_ms=100]] A long one."  # about 30 s


def leases_held(env: dict, user_id: int) -> int:
    client = redis.Redis.from_url(env["REDIS_URL"])
    return RedisStreamLeases(client, key_prefix=env["CACHE_KEY_PREFIX"]).held(user_id)


@pytest.fixture
def fault_env(site_env):
    if not site_env["REDIS_URL"]:
        pytest.fail("The fault suite needs REDIS_URL: leases must outlive a killed process")
    # Leases of their own: these processes die holding them.
    return {**site_env, "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-faults-{time.monotonic_ns()}"}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_sigterm_finishes_what_it_can_and_interrupts_the_rest_honestly(
    fault_env, server_logs, alice, make_api_key, server
):
    env = {**fault_env, "SHUTDOWN_GRACE_SECONDS": "4"}
    site = start_site(server_logs, env, server=server)
    key = make_api_key(alice)
    try:
        streams = [
            stream_in_thread(site.url, key, f"sigterm-{server}-{n:02d}", SHORT if n < 10 else LONG)
            for n in range(20)
        ]
        for stream in streams:
            assert stream.started.wait(30), stream
        site.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Draining: new answers are refused with a 503 to retry, and nothing is written.
        refused = httpx.post(
            f"{site.url}/api/conversations/",
            json={"message": "One more?"},
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": f"sigterm-{server}-late"},
        )
        health = httpx.get(f"{site.url}/health")
        for stream in streams:
            assert stream.ended.wait(30), stream
        site.process.wait(timeout=30)
    finally:
        site.stop()

    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) > 0
    assert "restarting" in refused.json()["error"]["message"]
    assert (health.status_code, health.json()["status"]) == (503, "draining")
    assert not Message.objects.filter(request_id=f"sigterm-{server}-late").exists()
    for stream in streams[:10]:  # finished within the grace period
        assert stream.final.name == "done" and stream.final.data["status"] == "completed"
        answer = Message.objects.get(request_id=stream.request_id, is_answer=True)
        assert (answer.status, answer.content) == ("completed", stream.text)
    for stream in streams[10:]:  # cut at the end of the grace period
        assert not stream.broken, stream.broken
        assert stream.final.name == "error", stream.events[-1]
        assert stream.final.data["status"] == "interrupted"
        assert "restarting" in stream.final.data["message"]
        assert stream.final.data["record"] == "saved"
        answer = Message.objects.get(request_id=stream.request_id, is_answer=True)
        assert answer.status == "interrupted"
        assert answer.content == stream.text  # exactly what the client received
        assert answer.error == "The server stopped while answering."
        assert answer.completion_tokens == stream.deltas
    assert leases_held(env, alice.pk) == 0

    # The same user starts new answers at once, on the next process.
    site = start_site(server_logs, env, server=server)
    try:
        again = [
            stream_in_thread(site.url, key, f"sigterm-{server}-again-{n}", SHORT) for n in range(3)
        ]
        for stream in again:
            assert stream.ended.wait(30)
            assert stream.status_code == 200 and stream.final.data["status"] == "completed"
    finally:
        site.stop()


def test_sigkill_leaves_every_answer_interrupted_with_its_checkpoint_and_no_lease(
    fault_env, server_logs, alice, make_api_key
):
    env = {**fault_env, "TURN_CHECKPOINT_SECONDS": "0.5", "TURN_HEARTBEAT_STALE_SECONDS": "3"}
    site = start_site(server_logs, env)
    key = make_api_key(alice)
    try:
        streams = [stream_in_thread(site.url, key, f"sigkill-{n:02d}", LONG) for n in range(20)]
        for stream in streams:
            assert stream.started.wait(30), stream
        time.sleep(2)  # several checkpoints
        os.kill(site.process.pid, signal.SIGKILL)
        for stream in streams:
            assert stream.ended.wait(30)
    finally:
        site.stop()
    assert all(stream.broken for stream in streams)
    assert leases_held(env, alice.pk) == 20  # until they expire: nobody gave them back

    # The next process marks them interrupted once their heartbeat is stale.
    site = start_site(server_logs, env)
    try:
        answers = Message.objects.filter(request_id__startswith="sigkill-", is_answer=True)
        wait_for(
            lambda: not answers.filter(status="streaming").exists(),
            timeout=20,
            what="no answer is left streaming",
        )
        for stream in streams:
            answer = answers.get(request_id=stream.request_id)
            assert answer.status == "interrupted"
            assert answer.error == "The server stopped while answering."
            assert answer.content and stream.text.startswith(answer.content)
            # At most one checkpoint interval (0.5 s, 5 tokens at 100 ms) behind the client,
            # with room for a busy machine.
            assert stream.deltas - answer.completion_tokens <= 15
            assert answer.completion_tokens <= stream.deltas

        # A dead process's leases lapse within a minute; then the user streams again.
        wait_for(lambda: leases_held(env, alice.pk) == 0, timeout=70, what="the leases lapse")
        again = [stream_in_thread(site.url, key, f"sigkill-again-{n}", SHORT) for n in range(3)]
        for stream in again:
            assert stream.ended.wait(30)
            assert stream.status_code == 200 and stream.final.data["status"] == "completed"
    finally:
        site.stop()


def test_a_reader_on_another_process_sees_the_same_interrupted_end(
    fault_env, server_logs, alice, make_api_key
):
    """The turn runs on A; its reader follows it through B's events endpoint. A is
    restarted: B's reader gets the same final `error`, with every event before it."""
    env = {**fault_env, "SHUTDOWN_GRACE_SECONDS": "0.5"}
    running_on, read_on = start_sites(server_logs, env, count=2)
    key = make_api_key(alice)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        owner = stream_in_thread(running_on.url, key, "sigterm-remote-1", LONG)
        assert owner.started.wait(30)
        with httpx.stream(
            "GET", f"{read_on.url}/api/turns/sigterm-remote-1/events", headers=auth, timeout=60
        ) as response:
            reader = SseReader(response)
            seen = reader.read(until_id=3)
            running_on.process.send_signal(signal.SIGTERM)
            seen += reader.read()
        assert owner.ended.wait(30)
    finally:
        running_on.stop()
        read_on.stop()

    assert [e.id for e in seen] == list(range(1, len(seen) + 1))  # nothing missing
    assert (seen[-1].name, seen[-1].data["status"]) == ("error", "interrupted")
    assert seen[-1].data == owner.final.data
    text = "".join(e.data["content"] for e in seen if e.name == "delta")
    assert text == owner.text
    answer = Message.objects.get(request_id="sigterm-remote-1", is_answer=True)
    assert (answer.status, answer.content) == ("interrupted", text)
