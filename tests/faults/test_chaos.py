"""300 answers at once, a fifth of their clients leaving early and a fifth of their model
calls failing, while a load balancer polls the health check: every turn is recorded once,
with the status its client experienced, and nothing is left behind.

One real daphne process started as the README's production command starts it (a raised
listen backlog), the development LLM server, the shared test database and Redis; the clients
speak OpenAI's streaming protocol over /v1, as the SDKs do, and retry a 503 as told.
"""

import asyncio
import json
import random
import threading
import time
from collections import Counter

import httpx
import pytest
import redis

from conversations.accounts.leases import RedisStreamLeases
from conversations.models import Message
from tests.conftest import CACHE_PREFIX
from tests.servers import ASGI_APPLICATION, free_port, start_server

pytestmark = [pytest.mark.faults, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STREAMS = 300
# What each client does, and the status its answer must be saved with.
PLANS = {
    "complete": ("[[devllm tokens=20 delay_ms=20]] Go on.", "completed"),
    # Slow enough (about 7 s) that the client surely leaves before the model ends.
    "leave": ("[[devllm delay_ms=150]] Go on and on.", "stopped"),
    "fail_before": ("[[devllm status=500]] Fail.", "failed"),
    "fail_midway": ("[[devllm tokens=20 delay_ms=20 error_after=5]] Fail later.", "failed"),
    "cut_midway": ("[[devllm tokens=20 delay_ms=20 drop_after=5]] Break.", "failed"),
}


def plan_for(n: int) -> str:
    """20% leave early, 20% meet an upstream fault (of three kinds), the rest complete."""
    roll = random.Random(n).random()
    if roll < 0.2:
        return "leave"
    if roll < 0.4:
        return ("fail_before", "fail_midway", "cut_midway")[n % 3]
    return "complete"


async def one_client(http: httpx.AsyncClient, key: str, n: int) -> tuple[str, str]:
    """Run one client's plan; return its request ID and what it experienced."""
    request_id = f"chaos-{n:04d}"
    prompt, _ = PLANS[plan_for(n)]
    body = {
        "model": "dev/dev-chat",
        "stream": True,
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! What shall we talk about?"},
            {"role": "user", "content": prompt},
        ],
    }
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id}
    for _ in range(20):
        async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            if r.status_code == 503:  # busy for a moment: nothing was written, try again
                await r.aread()
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            if r.status_code != 200:
                await r.aread()
                return request_id, "failed" if r.status_code >= 500 else f"http {r.status_code}"
            chunks = 0
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    return request_id, "completed"
                data = json.loads(line[6:])
                if "error" in data:
                    return request_id, "failed"
                chunks += 1
                if plan_for(n) == "leave" and chunks >= 3:
                    return request_id, "stopped"  # leaving the block closes the connection
            return request_id, "failed"  # the stream ended without [DONE]
    return request_id, "refused"


def poll_health(url: str, stop: threading.Event, statuses: list) -> None:
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            try:
                statuses.append(http.get(f"{url}/health").status_code)
            except httpx.TransportError as exc:
                statuses.append(repr(exc))
            time.sleep(0.05)


def test_300_streams_with_disconnects_and_upstream_faults_leave_one_honest_row_each(
    site_env, server_logs, alice, make_api_key
):
    port = free_port()
    env = {**site_env, "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-chaos"}
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=1024"
    site = start_server(
        ["-m", "daphne", "-e", endpoint, "-v", "0", ASGI_APPLICATION],
        port=port,
        ready_path="/health",
        log_path=server_logs / f"daphne-chaos-{port}.log",
        env=env,
    )
    key = make_api_key(alice)
    stop_polling, health = threading.Event(), []
    poller = threading.Thread(target=poll_health, args=(site.url, stop_polling, health))
    poller.start()

    async def everyone() -> list[tuple[str, str]]:
        limits = httpx.Limits(max_connections=STREAMS + 10)
        async with httpx.AsyncClient(base_url=site.url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one_client(http, key, n) for n in range(STREAMS)))

    try:
        experienced = dict(asyncio.run(everyone()))
        # Turns whose client left end on their own: wait for the last saves.
        answers = Message.objects.filter(request_id__startswith="chaos-", is_answer=True)
        deadline = time.monotonic() + 30
        while answers.filter(status="streaming").exists():
            assert time.monotonic() < deadline, "answers left streaming"
            time.sleep(0.2)
    finally:
        stop_polling.set()
        poller.join()
        site.stop()

    assert len(health) >= 10 and set(health) == {200}, Counter(map(str, health))
    # Nothing broke on the way (an event-log append, a save, a lease) that clients cannot see.
    assert "Traceback" not in site.log(), site.log()[-3000:]
    expected = {f"chaos-{n:04d}": PLANS[plan_for(n)][1] for n in range(STREAMS)}
    assert experienced == expected, Counter(
        (expected[r], got) for r, got in experienced.items() if expected[r] != got
    )
    saved = Counter(answers.values_list("request_id", flat=True))
    assert len(saved) == STREAMS and set(saved.values()) == {1}  # one row per request ID
    assert dict(answers.values_list("request_id", "status")) == expected
    assert Counter(expected.values())["stopped"] >= 40  # the plan really has each kind
    leases = RedisStreamLeases(
        redis.Redis.from_url(env["REDIS_URL"]), key_prefix=env["CACHE_KEY_PREFIX"]
    )
    assert leases.held(alice.pk) == 0
