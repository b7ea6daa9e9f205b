"""Redis fails under a running site: every answer still ends, its clients hear how, new ones
are refused honestly, and everything comes back by itself.

Each test runs chatsite (uvicorn, the production server) on a Redis of its own
(tests/faults/redis_server.py), which it kills and starts again empty, as a Redis without
persistence restarts; the shared Redis is never touched.
"""

import asyncio
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from conversations.models import Message
from tests.conftest import log_in
from tests.faults.redis_server import ThrowawayRedis
from tests.faults.streams import follow_in_thread, stream_in_thread
from tests.servers import start_sites
from tests.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.live, pytest.mark.django_db(transaction=True)]

ENDS_SOON = "[[devllm tokens=30 delay_ms=100]] End while Redis is away."  # about 3 s
LONG = "[[devllm tokens=300 delay_ms=100]] Keep talking for a while."  # about 30 s


@pytest.fixture
def own_redis():
    redis_server = ThrowawayRedis().start()
    yield redis_server
    redis_server.remove()


@pytest.fixture
def redis_env(site_env, own_redis) -> dict[str, str]:
    return {**site_env, "REDIS_URL": own_redis.url, "SHUTDOWN_GRACE_SECONDS": "1"}


def start_uvicorn_sites(server_logs, env: dict, count: int) -> list:
    return start_sites(server_logs, env, count=count, server="uvicorn")


def health(site) -> dict:
    return httpx.get(f"{site.url}/health", timeout=5).json()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_answers_ending_while_redis_is_down_reach_done_and_new_ones_get_a_503(
    redis_env, own_redis, server_logs, alice, make_api_key
):
    (site,) = start_uvicorn_sites(server_logs, redis_env, 1)
    key = make_api_key(alice)
    browser = log_in(site.url, "alice")
    session, csrf = browser.cookies["sessionid"], browser.cookies["csrftoken"]
    try:
        streams = [stream_in_thread(site.url, key, f"outage-{n:02d}", ENDS_SOON) for n in range(10)]
        stopped = stream_in_thread(site.url, key, "outage-stop", LONG)
        for stream in [*streams, stopped]:
            assert stream.started.wait(30), stream
        own_redis.stop()

        # Every answer ends, and its client hears `done` soon after its last token.
        for stream in streams:
            assert stream.ended.wait(30), stream
            assert not stream.broken, stream.broken
            assert stream.deltas == 30
            assert (stream.final.name, stream.final.data["status"]) == ("done", "completed")
            assert stream.final.data["record"] == "saved"
            assert stream.final.at - stream.events[-2].at < 3.0
        # A Stop while Redis is away stops the answer, and its client hears so.
        stop = httpx.post(f"{site.url}/api/turns/outage-stop/stop", headers=auth(key), timeout=10)
        assert stop.json()["status"] == "stopped", stop.text
        assert stopped.ended.wait(10), stopped
        assert (stopped.final.name, stopped.final.data["status"]) == ("done", "stopped")

        # The process says Redis is away, and refuses new answers with a 503 to retry, in
        # each surface's own error shape.
        wait_for(lambda: health(site)["redis"] == "unreachable", timeout=5)
        assert health(site)["status"] == "degraded"
        refused_site = httpx.post(
            f"{site.url}/api/conversations/",
            json={"message": "Are you there?"},
            headers=auth(key) | {"X-Request-ID": "outage-refused"},
            timeout=10,
        )
        refused_v1 = httpx.post(
            f"{site.url}/v1/chat/completions",
            json={"model": "dev/dev-chat", "messages": [{"role": "user", "content": "Hi"}]},
            headers=auth(key),
            timeout=10,
        )
        refused_socket = asyncio.run(send_on_socket(site, session, "Hello over the socket"))
        refused_login = httpx.post(
            f"{site.url}/accounts/login/",
            data={"username": "alice", "password": "x", "csrfmiddlewaretoken": csrf},
            cookies={"csrftoken": csrf},
            timeout=10,
        )
        assert health(site)["running_turns"] == 0

        own_redis.start()  # empty, as a Redis without persistence comes back
        wait_for(lambda: health(site)["status"] == "ok", timeout=10)
        after = stream_in_thread(site.url, key, "outage-after", "[[devllm tokens=5]] Back?")
        assert after.ended.wait(30) and after.final.data["status"] == "completed", after
    finally:
        site.stop()

    assert refused_site.status_code == 503, refused_site.text
    assert int(refused_site.headers["Retry-After"]) > 0
    assert "Redis" in refused_site.json()["error"]["message"]
    assert refused_v1.status_code == 503, refused_v1.text
    assert refused_v1.json()["error"]["type"] == "server_error"
    assert int(refused_v1.headers["Retry-After"]) > 0
    assert (refused_socket["type"], refused_socket["status"]) == ("error", 503), refused_socket
    assert refused_socket["retry_after"] > 0
    # A login is refused too (its attempts cannot be counted), with a page that says why.
    assert refused_login.status_code == 503
    assert "unavailable for a moment" in refused_login.text
    assert not Message.objects.filter(request_id="outage-refused").exists()
    saved = dict(
        Message.objects.filter(is_answer=True, request_id__startswith="outage-").values_list(
            "request_id", "status"
        )
    )
    assert saved == {
        **{f"outage-{n:02d}": "completed" for n in range(10)},
        "outage-stop": "stopped",
        "outage-after": "completed",
    }


async def send_on_socket(site, session: str, message: str) -> dict:
    headers = {"Cookie": f"sessionid={session}"}
    url = site.url.replace("http://", "ws://") + "/ws/chat/"
    async with connect(url, additional_headers=headers, origin=site.url) as socket:
        await socket.send(json.dumps({"type": "send", "message": message}))
        async with asyncio.timeout(15):
            return json.loads(await socket.recv())


def test_a_redis_restart_without_persistence_loses_no_event_and_no_stop(
    redis_env, own_redis, server_logs, alice, make_api_key
):
    """Process A runs the answers; process B follows one and later stops another. Redis
    restarts empty in the middle: A writes the lost events again, B's reader goes on to the
    end, a new reader from the first event gets every one, and a Stop sent through B a few
    seconds after the restart reaches A (both processes joined their groups again)."""
    a, b = start_uvicorn_sites(server_logs, redis_env, 2)
    key = make_api_key(alice)
    try:
        followed = stream_in_thread(a.url, key, "restart-followed", ENDS_SOON.replace("30", "60"))
        to_stop = stream_in_thread(a.url, key, "restart-to-stop", LONG)
        assert followed.started.wait(30) and to_stop.started.wait(30)
        reader = follow_in_thread(b.url, key, "restart-followed")
        assert reader.started.wait(30), reader

        own_redis.restart()
        time.sleep(5)  # "within seconds": the processes notice, and join their groups again

        stopping_at = time.monotonic()
        stop = httpx.post(f"{b.url}/api/turns/restart-to-stop/stop", headers=auth(key), timeout=10)
        assert to_stop.ended.wait(10), to_stop
        stopped_after = to_stop.final.at - stopping_at
        for stream in (followed, reader):
            assert stream.ended.wait(30), stream
        replay = follow_in_thread(b.url, key, "restart-followed")
        assert replay.ended.wait(30), replay
    finally:
        for site in (a, b):
            site.stop()

    assert stop.json()["status"] == "stopped", stop.text
    assert (to_stop.final.name, to_stop.final.data["status"]) == ("done", "stopped")
    assert stopped_after < 2.0
    assert (followed.final.data["status"], followed.deltas) == ("completed", 60)
    # B's reader saw the answer through, every event once and in order.
    assert not reader.broken and reader.final.name == "done", reader.events[-3:]
    assert [e.id for e in reader.events] == [e.id for e in followed.events]
    assert reader.text == followed.text
    # A new reader from the start gets all of it from the log that A wrote again.
    assert replay.status_code == 200, replay
    assert [e.id for e in replay.events] == [e.id for e in followed.events]
    assert replay.text == followed.text


def test_readers_in_another_process_end_when_the_answers_process_is_killed(
    redis_env, server_logs, alice, make_api_key
):
    """SIGKILL runs nothing of the ending: B's sweep marks the answer interrupted and gives
    its log a final event, so that B's reader ends and a new one replays to that end."""
    env = {**redis_env, "TURN_HEARTBEAT_STALE_SECONDS": "4", "TURN_CHECKPOINT_SECONDS": "0.5"}
    a, b = start_uvicorn_sites(server_logs, env, 2)
    key = make_api_key(alice)
    try:
        owner = stream_in_thread(a.url, key, "killed-owner", LONG)
        assert owner.started.wait(30), owner
        reader = follow_in_thread(b.url, key, "killed-owner")
        assert reader.started.wait(30), reader
        a.process.kill()
        killed_at = time.monotonic()
        assert reader.ended.wait(30), reader
        ended_after = time.monotonic() - killed_at
        replay = follow_in_thread(b.url, key, "killed-owner")
        assert replay.ended.wait(15), replay
    finally:
        for site in (a, b):
            site.stop()

    assert (reader.final.name, reader.final.data["status"]) == ("error", "interrupted")
    assert "stopped" in reader.final.data["message"]
    assert ended_after < 20
    assert (replay.final.name, replay.final.data["status"]) == ("error", "interrupted")
    answer = Message.objects.get(request_id="killed-owner", is_answer=True)
    assert answer.status == "interrupted"
