"""Limits resolved per user, and the daily token quota."""

import dataclasses
import json
import re
import uuid

import pytest
from django.test import Client

from conversations import services
from conversations.accounts.limits import limits_for, openai_duration, tokens_used_today
from conversations.models import Conversation, Message
from conversations.turns.runner import TurnAccumulator

pytestmark = pytest.mark.django_db


def spend(user, prompt, completion, *, status="completed"):
    """Save one answer with this usage through the real save, which charges the ledger."""
    turn = services.turn_start(
        user=user,
        conversation_id=None,
        model_key="dev/dev-chat",
        content="Count me",
        request_id=uuid.uuid4().hex,
    )
    finished = TurnAccumulator().finish(turn, status=status)
    services.save_finished_turn(
        dataclasses.replace(finished, prompt_tokens=prompt, completion_tokens=completion)
    )
    return turn


def test_limits_come_from_settings_unless_staff_override_them(alice, bob, set_limits, settings):
    settings.RATE_LIMIT_PER_MINUTE, settings.MAX_CONCURRENT_STREAMS = 20, 3
    settings.DAILY_TOKEN_QUOTA = 1000
    set_limits(alice, requests_per_minute=5, daily_token_quota=0)

    mine, theirs = limits_for(alice), limits_for(bob)

    assert (mine.requests_per_minute, mine.max_concurrent_streams, mine.daily_token_quota) == (
        5,
        3,
        0,
    )
    assert (theirs.requests_per_minute, theirs.daily_token_quota) == (20, 1000)


def test_tokens_used_today_counts_only_the_users_answers(alice, bob):
    spend(alice, 10, 30)
    spend(alice, 5, None)
    spend(bob, 100, 100)
    assert tokens_used_today(alice) == 45


def test_deleting_conversations_gives_no_quota_back(alice):
    turn = spend(alice, 10, 30)
    services.conversation_delete(user=alice, conversation_id=turn.conversation_id)
    Conversation.objects.filter(owner=alice).delete()

    assert tokens_used_today(alice) == 40


def test_an_answer_saved_twice_is_charged_once(alice):
    turn = spend(alice, 10, 30)
    again = TurnAccumulator().finish(turn, status="completed")
    services.save_finished_turn(dataclasses.replace(again, prompt_tokens=10, completion_tokens=30))

    assert tokens_used_today(alice) == 40


def test_an_answer_without_reported_usage_is_charged_for_its_counted_prompt(alice):
    turn = services.turn_start(
        user=alice,
        conversation_id=None,
        model_key="dev/dev-chat",
        content="x" * 400,
        request_id="stopped-early-01",
    )
    services.save_finished_turn(TurnAccumulator().finish(turn, status="stopped"))

    answer = Message.objects.get(request_id="stopped-early-01", is_answer=True)
    # 400 characters are about 100 tokens, with a few for the message's framing.
    assert 100 < answer.prompt_tokens < 120 and not answer.usage_reported
    assert tokens_used_today(alice) == answer.prompt_tokens


@pytest.mark.parametrize(
    ("seconds", "written"), [(0, "0s"), (7, "7s"), (60, "1m0s"), (361, "6m1s"), (7322, "2h2m2s")]
)
def test_waits_are_written_as_openai_writes_its_reset_headers(seconds, written):
    assert openai_duration(seconds) == written


def test_a_spent_daily_quota_refuses_with_the_time_until_it_renews(alice, set_limits):
    set_limits(alice, daily_token_quota=40)
    spend(alice, 10, 30)
    client = Client()
    client.force_login(alice)

    response = client.post(
        "/chat/stream/", data=json.dumps({"message": "hi"}), content_type="application/json"
    )

    assert response.status_code == 429
    assert "daily quota of 40 tokens" in response.json()["error"]["message"]
    assert int(response["Retry-After"]) <= 86401
    # OpenAI's -tokens trio describes the quota, as SDKs and gateways read it.
    assert response["x-ratelimit-limit-tokens"] == "40"
    assert response["x-ratelimit-remaining-tokens"] == "0"
    assert re.fullmatch(r"(\d+h)?(\d+m)?\d+s", response["x-ratelimit-reset-tokens"])
    assert Message.objects.filter(role="user").count() == 1  # only the spending turn's


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:6379/0"])
def test_re_attaching_is_counted_per_user_and_refused_past_the_rate(settings, redis_url):
    """Each attach replays an answer so far: past READER_ATTACHES_PER_MINUTE a user's next
    one is a 429 that says when to try again; another user's are their own."""
    import asyncio

    from conversations import redis_async
    from conversations.accounts.limits import RateLimited, count_attach

    settings.REDIS_URL, settings.READER_ATTACHES_PER_MINUTE = redis_url, 3
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache"
            if redis_url
            else "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"attach-test-{uuid.uuid4().hex[:12]}",
        }
    }
    user, other = 1_000_001, 1_000_002

    async def attach(user_id: int) -> str:
        try:
            await count_attach(user_id)
            return "ok"
        except RateLimited as refused:
            return refused.message

    async def scenario() -> list[str]:
        return [await attach(user) for _ in range(4)] + [await attach(other)]

    try:
        results = asyncio.run(scenario())
    finally:
        redis_async.reset_redis_clients()

    assert results[:3] == ["ok"] * 3 and results[4] == "ok"
    assert results[3].startswith("You have followed answers 3 times this minute")
