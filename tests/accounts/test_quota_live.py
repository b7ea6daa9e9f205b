"""The daily token quota over real HTTP: reserved before every answer, charged to a ledger.

Each answer reserves what it may cost before it starts (its prompt, estimated, and its
max_tokens), beside what the user's running answers reserved, and is charged what it used
when it is saved, however it ended. So answers whose limits are set never overrun the quota
together, and a request that cannot fit is refused before anything is written.
"""

import asyncio

import httpx
import pytest

from conversations import services
from conversations.accounts.limits import tokens_used_today
from conversations.models import DailyUsage, Message
from tests.conftest import fresh_rate_window, log_in
from tests.sse_client import post_stream
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

QUOTA = 300
CALLS = 12
# Each answer may cost about 60 tokens (a short prompt, estimated, and max_tokens 40, the
# 40 tokens it sends 20 ms apart), so at most four fit in the quota at once; calls start
# 150 ms apart, so later ones come while earlier ones still run, and after they ended.
PROMPT = "[[devllm tokens=40 delay_ms=20]] Use up my quota, please."
STAGGER = 0.15


async def staggered_calls(site, key: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=site.url, timeout=60) as client:

        async def call(n: int) -> httpx.Response:
            await asyncio.sleep(n * STAGGER)
            return await client.post(
                "/v1/chat/completions",
                json={
                    "model": "dev/dev-chat",
                    "messages": [{"role": "user", "content": PROMPT}],
                    "max_tokens": 40,
                },
                headers={"Authorization": f"Bearer {key}"},
            )

        return await asyncio.gather(*(call(n) for n in range(CALLS)))


def tokens(answer: Message) -> int:
    return (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)


def test_parallel_answers_with_max_tokens_never_overrun_the_quota(
    site, alice, make_api_key, set_limits
):
    set_limits(
        alice, daily_token_quota=QUOTA, max_concurrent_streams=CALLS, requests_per_minute=1000
    )

    responses = asyncio.run(staggered_calls(site, make_api_key(alice)))

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, statuses
    answers = list(Message.objects.filter(user=alice, is_answer=True))
    assert len(answers) == statuses.count(200) >= 4
    assert all(a.status == "completed" for a in answers)
    # The ledger holds exactly what the saved answers used, and that fits in the quota.
    assert tokens_used_today(alice) == sum(tokens(a) for a in answers) <= QUOTA
    refusal = next(r for r in responses if r.status_code == 429).json()["error"]
    assert (refusal["type"], refusal["code"]) == ("tokens", "rate_limit_exceeded")
    assert "quota" in refusal["message"]


def test_a_prompt_too_large_for_what_is_left_is_refused_and_nothing_is_written(
    site, alice, make_api_key, set_limits
):
    set_limits(alice, daily_token_quota=QUOTA)
    services.usage_charge(user_id=alice.pk, tokens=84)  # 216 left
    # About 2.4 MB of prompt: 600,000 tokens, as estimated.
    messages = [{"role": "user", "content": "word " * 6_000} for _ in range(80)]

    response = httpx.post(
        f"{site.url}/v1/chat/completions",
        json={"model": "dev/dev-chat", "messages": messages},
        headers={"Authorization": f"Bearer {make_api_key(alice)}", "X-Request-ID": "huge-prompt"},
        timeout=60,
    )

    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "tokens"
    assert "more than the 216 left" in error["message"]
    assert not Message.objects.filter(request_id="huge-prompt").exists()
    assert tokens_used_today(alice) == 84


def test_a_stopped_stream_is_charged_for_its_prompt(site, alice):
    client = log_in(site.url, "alice")
    stream = post_stream(
        client,
        {"message": "Tell me a long story about quotas.", "model": "dev/dev-chat"},
        stop_after=2,
    )
    request_id = stream.named("start")[0].data["request_id"]

    answer = wait_for(
        lambda: Message.objects.filter(
            request_id=request_id, is_answer=True, status="stopped"
        ).first(),
        timeout=5,
    )
    assert answer.prompt_tokens and answer.prompt_tokens > 0 and not answer.usage_reported
    assert answer.completion_tokens >= 2
    assert DailyUsage.objects.get(user=alice).tokens == tokens(answer)


def test_deleting_conversations_does_not_restore_the_quota(site, alice, set_limits):
    set_limits(alice, daily_token_quota=QUOTA)
    client = log_in(site.url, "alice")
    post_stream(client, {"message": "[[devllm tokens=5]] Short, please.", "model": "dev/dev-chat"})
    used = wait_for(lambda: tokens_used_today(alice), timeout=5)
    conversation_id = Message.objects.get(user=alice, is_answer=True).conversation_id

    assert client.delete(f"/api/conversations/{conversation_id}/").status_code == 204
    assert tokens_used_today(alice) == used


def test_a_request_refused_for_the_quota_uses_up_no_request_of_the_minute(
    site, alice, make_api_key, set_limits
):
    set_limits(alice, daily_token_quota=QUOTA, requests_per_minute=1)
    fresh_rate_window(alice)
    client = httpx.Client(
        base_url=site.url, headers={"Authorization": f"Bearer {make_api_key(alice)}"}, timeout=30
    )

    def ask(max_tokens: int) -> httpx.Response:
        messages = [{"role": "user", "content": "[[devllm tokens=3]] hi"}]
        body = {"model": "dev/dev-chat", "messages": messages, "max_tokens": max_tokens}
        return client.post("/v1/chat/completions", json=body)

    too_large = ask(QUOTA * 2)
    assert too_large.status_code == 429
    assert too_large.json()["error"]["type"] == "tokens"
    # The quota's fields sit beside the minute's, in OpenAI's headers and in the IETF draft's.
    assert too_large.headers["x-ratelimit-remaining-requests"] == "1"
    assert too_large.headers["x-ratelimit-limit-tokens"] == str(QUOTA)
    policy = too_large.headers["RateLimit-Policy"]
    assert policy == f'"requests";q=1;w=60, "tokens";q={QUOTA};w=86400'
    state = too_large.headers["RateLimit"]
    assert state.startswith('"requests";r=1;t=') and f', "tokens";r={QUOTA};t=' in state

    # The minute's one request is still there.
    fits = ask(5)
    assert fits.status_code == 200, fits.text
    assert fits.headers["x-ratelimit-remaining-requests"] == "0"
    assert ask(5).status_code == 429
