"""Limits resolved per user, and the daily token quota."""

import json
import re

import pytest
from django.test import Client

from conversations.models import Conversation, Message
from conversations.ratelimit import limits_for, openai_duration, tokens_used_today

pytestmark = pytest.mark.django_db


def spend(user, prompt, completion):
    conversation = Conversation.objects.create(owner=user, title="t", model="dev/dev-chat")
    Message.objects.create(
        conversation=conversation,
        user=user,
        role="assistant",
        is_answer=True,
        request_id=f"spent-{prompt}-{completion}",
        prompt_tokens=prompt,
        completion_tokens=completion,
    )


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
    assert Message.objects.filter(role="user").count() == 0
