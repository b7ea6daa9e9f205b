"""Per-user limits over real HTTP: shared across server processes through Redis."""

import threading
import time

import httpx
import openai
import pytest

from conversations.models import Message
from tests.conftest import fresh_rate_window, log_in, openai_client, rate_window_left
from tests.sse_client import post_stream

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

ONE_TOKEN = [{"role": "user", "content": "[[devllm tokens=1 delay_ms=1]] hi"}]


@pytest.fixture
def two_sites(site_pair):
    return site_pair


def call(site, key) -> httpx.Response:
    return httpx.post(
        f"{site.url}/v1/chat/completions",
        json={"model": "dev/dev-chat", "messages": ONE_TOKEN},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_per_minute_limit_holds_across_two_server_processes(
    two_sites, alice, bob, make_api_key, set_limits
):
    limit = 5
    set_limits(alice, requests_per_minute=limit)
    alice_key, bob_key = make_api_key(alice), make_api_key(bob)
    fresh_rate_window(alice)
    responses = [call(two_sites[n % 2], alice_key) for n in range(2 * limit)]

    statuses = [r.status_code for r in responses]
    seen = [
        (r.status_code, r.headers.get("x-ratelimit-remaining-requests"), r.headers.get("RateLimit"))
        for r in responses
    ]
    assert statuses.count(200) == limit, seen
    assert statuses == [200] * limit + [429] * limit
    assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:limit]] == [
        "4",
        "3",
        "2",
        "1",
        "0",
    ]
    for refused in responses[limit:]:
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["x-ratelimit-limit-requests"] == str(limit)
        assert refused.headers["RateLimit-Policy"] == f'"requests";q={limit};w=60'
        assert refused.headers["RateLimit"].startswith('"requests";r=0;t=')
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    # Nothing is saved for the refused requests.
    assert Message.objects.filter(user=alice, role="assistant").count() == limit
    # Another user is not affected, on either process.
    assert [call(site, bob_key).status_code for site in two_sites] == [200, 200]


def test_the_sdk_raises_rate_limit_error(site, alice, make_api_key, set_limits):
    set_limits(alice, requests_per_minute=1)
    sdk = openai_client(site, make_api_key(alice))
    fresh_rate_window(alice)
    sdk.chat.completions.create(model="dev/dev-chat", messages=ONE_TOKEN)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="dev/dev-chat", messages=ONE_TOKEN)
    assert int(caught.value.response.headers["Retry-After"]) >= 1
    assert "your limit of 1 request a minute" in caught.value.message


def test_web_chat_and_api_share_one_per_minute_count(site, alice, make_api_key, set_limits):
    set_limits(alice, requests_per_minute=2)
    web = log_in(site.url, "alice")
    fresh_rate_window(alice)
    assert post_stream(web, {"message": "[[devllm tokens=1]] hi"}).status_code == 200
    assert call(site, make_api_key(alice)).status_code == 200

    refused = post_stream(web, {"message": "one more"})

    assert refused.status_code == 429
    message = refused.events[0].data["error"]["message"]
    assert "limit of 2 requests a minute" in message and "Try again in" in message
    assert int(refused.headers["Retry-After"]) >= 1
    assert not Message.objects.filter(content="one more").exists()


def test_stream_over_the_concurrency_cap_is_refused_while_the_others_continue(
    site, alice, set_limits
):
    set_limits(alice, max_concurrent_streams=2)
    client = log_in(site.url, "alice")
    results = {}

    def slow_stream(name):
        results[name] = post_stream(client, {"message": "[[devllm delay_ms=60]] long answer"})

    threads = [threading.Thread(target=slow_stream, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while Message.objects.filter(role="assistant", status="streaming").count() < 2:
        assert time.monotonic() < deadline, "the two streams never started"
        time.sleep(0.05)

    refused = post_stream(client, {"message": "a third at once"})

    assert refused.status_code == 429
    assert "already have 2 answers streaming" in refused.events[0].data["error"]["message"]
    assert refused.headers["Retry-After"] == "1"
    for thread in threads:
        thread.join(timeout=30)
    assert [results[n].events[-1].data["status"] for n in ("a", "b")] == ["completed"] * 2
    # Both slots came back when the streams ended, stopped or not.
    assert post_stream(client, {"message": "[[devllm tokens=1]] now"}).status_code == 200
    stopped = post_stream(client, {"message": "[[devllm delay_ms=50]] x"}, stop_after=2)
    assert stopped.status_code == 200
    time.sleep(0.5)
    both = [post_stream(client, {"message": f"[[devllm tokens=1]] {n}"}) for n in range(2)]
    assert [s.status_code for s in both] == [200, 200]


def test_a_client_that_waits_as_told_by_retry_after_gets_in(
    site, make_user, make_api_key, set_limits
):
    # Of forty users, the one whose minute ends soonest, not too soon: the wait to test is
    # the one told in the window's last second, where a rounded-down Retry-After fell short.
    # (Each user's window is staggered; with forty, the soonest is a second or two past 3.)
    users = [make_user(f"waiter{n}") for n in range(40)]
    user = min((u for u in users if rate_window_left(u) > 3), key=rate_window_left)
    set_limits(user, requests_per_minute=1)
    sdk = openai_client(site, make_api_key(user))
    sdk.chat.completions.create(model="dev/dev-chat", messages=ONE_TOKEN)
    time.sleep(max(0.0, rate_window_left(user) - 1.5))  # half a second before the last one

    # The SDK waits as told by Retry-After, then tries once more: that try must get in.
    answered = sdk.with_options(max_retries=1).chat.completions.with_raw_response.create(
        model="dev/dev-chat", messages=ONE_TOKEN
    )

    assert answered.http_response.status_code == 200
    assert answered.retries_taken == 1
    assert Message.objects.filter(user=user, is_answer=True, status="completed").count() == 2
