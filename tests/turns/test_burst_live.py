"""One user's burst past their limit must not stall the server for anyone, over real HTTP.

A refused request once kept its pooled database connection until its response closed, while
Django logged the error response in a default-executor thread that post-stream saves had all
taken, each waiting for a connection: a circular wait that only the pool's timeout broke
(10 s stalls, HTML 500s, answers left "streaming").
"""

import asyncio
import time

import httpx
import pytest

from conversations.models import Message
from tests.conftest import user_with_window_left

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

BURST = 30
LIMIT = 10
# The stall this guards against lasts the pool's whole timeout (10 s in the test server);
# a healthy server answers in well under half of it, even on a busy 2-core machine.
STALL = 5.0


async def timed_call(client: httpx.AsyncClient, key: str, content: str) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "dev/dev-chat", "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    return response.status_code, time.monotonic() - started


async def burst_while_another_user_chats(site, burst_key: str, other_key: str):
    limits = httpx.Limits(max_connections=BURST + 5)
    async with httpx.AsyncClient(base_url=site.url, timeout=60, limits=limits) as client:
        # One-token answers finish, and are saved, while the refusals are being answered:
        # the two compete for threads and connections, as they did when the server stalled.
        burst = [
            timed_call(client, burst_key, f"[[devllm tokens=1 delay_ms=1]] burst {n}")
            for n in range(BURST)
        ]
        other = timed_call(client, other_key, "[[devllm tokens=20]] Meanwhile, hello")
        *burst_results, other_result = await asyncio.gather(*burst, other)
    return burst_results, other_result


def test_a_burst_past_the_limit_is_refused_at_once_and_stalls_nobody(
    site, make_user, bob, make_api_key, set_limits
):
    # The whole burst must fall in one window of the bursting user's.
    alice = user_with_window_left(make_user, "burster", 30)
    set_limits(alice, requests_per_minute=LIMIT, max_concurrent_streams=BURST)
    alice_key, bob_key = make_api_key(alice), make_api_key(bob)

    burst, (bob_status, bob_seconds) = asyncio.run(
        burst_while_another_user_chats(site, alice_key, bob_key)
    )

    statuses = sorted(status for status, _ in burst)
    assert statuses == [200] * LIMIT + [429] * (BURST - LIMIT), statuses
    refusals = [seconds for status, seconds in burst if status == 429]
    assert max(refusals) < STALL, f"refusals took up to {max(refusals):.1f} s"
    assert bob_status == 200
    assert bob_seconds < STALL, f"another user's call took {bob_seconds:.1f} s"
    answers = Message.objects.filter(user=alice, is_answer=True)
    assert answers.count() == LIMIT
    assert set(answers.values_list("status", flat=True)) == {"completed"}
    assert Message.objects.get(user=bob, is_answer=True).status == "completed"
