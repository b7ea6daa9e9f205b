"""One greedy user cannot take what every user shares.

Two chatsite processes (uvicorn) on a Redis of the test's own. Alice attacks as an audit did:
hundreds of readers of her slow answer on the other process, and a flood of readers
attaching and leaving (from a process of its own, tests/faults/flood.py). Bob's calls, Stops
and key revocation must go on as if she were not there.
"""

import asyncio
import subprocess
import sys
import time

import httpx
import pytest

from conversations.models import ApiKey
from tests.conftest import log_in
from tests.faults.redis_server import ThrowawayRedis
from tests.faults.streams import stream_in_thread
from tests.servers import ROOT, start_site

pytestmark = [pytest.mark.faults, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SLOW = "[[devllm tokens=400 delay_ms=100]] Take all the time you need."  # about 40 s
READERS = 300
FLOOD_LOOPS = 150


@pytest.fixture
def two_processes(site_env, server_logs, request):
    """P1 and P2 on one Redis of their own; P2's Redis pool is small (50), as in the audit
    that took it down with 60 readers. A test may set more of P2's settings."""
    own_redis = ThrowawayRedis().start()
    env = {**site_env, "REDIS_URL": own_redis.url, "SHUTDOWN_GRACE_SECONDS": "1"}
    p1 = start_site(server_logs, env, server="uvicorn")
    p2_env = env | {"TURN_LOG_REDIS_CONNECTIONS": "50"} | getattr(request, "param", {})
    p2 = start_site(server_logs, p2_env, server="uvicorn")
    yield p1, p2, own_redis
    for site in (p1, p2):
        site.stop()
    own_redis.remove()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# The bounds on one user's readers lifted: what is shown is that readers hold no connection.
@pytest.mark.parametrize(
    "two_processes",
    [{"MAX_READERS_PER_USER": "5000", "READER_ATTACHES_PER_MINUTE": "5000"}],
    indirect=True,
)
def test_hundreds_of_one_users_readers_leave_the_pool_to_everyone_else(
    two_processes, alice, bob, make_api_key
):
    p1, p2, own_redis = two_processes
    alice_key, bob_key = make_api_key(alice), make_api_key(bob)
    answer = stream_in_thread(p1.url, alice_key, "greedy-answer", SLOW)
    assert answer.started.wait(30), answer

    async def attack_and_call() -> tuple[list[int], list[int], list[int], int]:
        limits = httpx.Limits(max_connections=READERS + 20)
        async with httpx.AsyncClient(base_url=p2.url, timeout=60, limits=limits) as http:
            opened = asyncio.Event()
            held: list[int] = []

            async def read(n: int) -> int:
                url = "/api/turns/greedy-answer/events"
                async with http.stream("GET", url, headers=auth(alice_key)) as response:
                    events = 0
                    async for chunk in response.aiter_raw():
                        events += chunk.count(b"\nevent: ")
                        if events and n not in held:
                            held.append(n)
                            if len(held) == READERS:
                                opened.set()
                        if b"event: done" in chunk:
                            break
                    return response.status_code

            readers = [asyncio.create_task(read(n)) for n in range(READERS)]
            async with asyncio.timeout(60):
                await opened.wait()
            connections = len(own_redis.client().client_list())
            # Bob, meanwhile, on the same process.
            bob_statuses = []
            for n in range(3):
                response = await http.post(
                    "/v1/chat/completions",
                    json={
                        "model": "dev/dev-chat",
                        "messages": [{"role": "user", "content": f"[[devllm tokens=5]] Hi {n}"}],
                    },
                    headers=auth(bob_key),
                    timeout=15,
                )
                bob_statuses.append(response.status_code)
            stop = await http.post("/api/turns/greedy-answer/stop", headers=auth(alice_key))
            assert stop.json()["status"] == "stopped", stop.text
            return await asyncio.gather(*readers), bob_statuses, held, connections

    statuses, bob_statuses, held, connections = asyncio.run(attack_and_call())

    assert bob_statuses == [200, 200, 200]
    assert statuses == [200] * READERS and len(held) == READERS
    # 300 readers waiting, and the two processes' connections to Redis are a few dozen.
    assert connections < 80, connections
    assert answer.ended.wait(10) and answer.final.data["status"] == "stopped"


def test_a_flood_of_readers_coming_and_going_drops_no_stop_and_no_revocation(
    two_processes, alice, bob, make_api_key
):
    p1, p2, _ = two_processes
    alice_key, bob_key = make_api_key(alice), make_api_key(bob)
    flooded = stream_in_thread(p1.url, alice_key, "flood-answer", SLOW)
    bobs = stream_in_thread(p2.url, bob_key, "bob-answer-1", SLOW)  # runs on P2
    assert flooded.started.wait(30) and bobs.started.wait(30)
    bob_on_p1 = log_in(p1.url, "bob")
    with httpx.Client(base_url=p2.url, timeout=10) as p2_client:
        assert p2_client.get("/v1/models", headers=auth(bob_key)).status_code == 200  # cached

    flood = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.faults.flood"),
            *(p2.url, alice_key, "flood-answer", str(FLOOD_LOOPS), "30"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(5)  # the flood is in full swing
        print(
            subprocess.run(
                [
                    "ps",
                    "-o",
                    "pid,pcpu,args",
                    "-p",
                    f"{p1.process.pid},{p2.process.pid},{flood.pid}",
                ],
                capture_output=True,
                text=True,
            ).stdout
        )
        print(
            subprocess.run(
                ["top", "-b", "-n", "1", "-o", "%CPU"], capture_output=True, text=True
            ).stdout[:1500]
        )
        # Bob stops his answer through P1; it runs on P2.
        stop_sent = time.monotonic()
        stop = bob_on_p1.post("/api/turns/bob-answer-1/stop")
        assert bobs.ended.wait(10), bobs
        stop_landed = bobs.final.at - stop_sent
        # Bob revokes his key on P1; P2 must refuse it at once.
        key_id = ApiKey.objects.get(user=bob).pk
        revoked_at = time.monotonic()
        assert bob_on_p1.post(f"/settings/api-keys/{key_id}/revoke/").status_code == 302
        with httpx.Client(base_url=p2.url, timeout=10) as p2_client:
            while p2_client.get("/v1/models", headers=auth(bob_key)).status_code == 200:
                assert time.monotonic() - revoked_at < 10, "P2 never heard of the revocation"
                time.sleep(0.02)
        refused_after = time.monotonic() - revoked_at
    finally:
        cycles = int(flood.communicate(timeout=60)[0] or 0)

    print("stop landed", stop_landed, "refused after", refused_after, "cycles", cycles)
    assert stop.json()["status"] == "stopped", stop.text
    assert bobs.final.data["status"] == "stopped"
    assert stop_landed < 1.0, stop_landed
    assert refused_after < 1.0, refused_after
    assert cycles > 1000, f"only {cycles} attach-and-leave cycles: no flood to speak of"
