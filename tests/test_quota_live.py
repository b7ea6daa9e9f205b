"""The daily token quota over real HTTP: charged to a ledger, checked before every answer.

Each answer is charged when it is saved, however it ended; the check comes before a stream
starts. So once the quota is reached no new answer starts, and the quota is overrun by at
most the answers already running then.
"""

import asyncio
import datetime

import httpx
import pytest

from conversations.models import DailyUsage, Message
from conversations.ratelimit import tokens_used_today
from tests.conftest import log_in
from tests.sse_client import post_stream
from tests.test_streaming_live import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

QUOTA = 300
CALLS = 12
# Each answer is about 60 tokens (a short prompt and 40 tokens, 20 ms apart), so the quota
# is reached after five of them; calls start 150 ms apart, so later ones come after that.
PROMPT = "[[devllm tokens=40 delay_ms=20]] Use up my quota, please."
STAGGER = 0.15
# An answer admitted just before the charge that reached the quota was committed is still
# one "already running"; allow the time a save takes between the two clocks.
SAVE_SLACK = datetime.timedelta(seconds=1)


async def staggered_calls(site, key: str) -> list[int]:
    async with httpx.AsyncClient(base_url=site.url, timeout=60) as client:

        async def call(n: int) -> int:
            await asyncio.sleep(n * STAGGER)
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "dev/dev-chat", "messages": [{"role": "user", "content": PROMPT}]},
                headers={"Authorization": f"Bearer {key}"},
            )
            return response.status_code

        return await asyncio.gather(*(call(n) for n in range(CALLS)))


def tokens(answer: Message) -> int:
    return (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)


def test_parallel_answers_overrun_the_quota_only_by_those_already_running(
    site, alice, make_api_key, set_limits
):
    set_limits(
        alice, daily_token_quota=QUOTA, max_concurrent_streams=CALLS, requests_per_minute=1000
    )

    statuses = asyncio.run(staggered_calls(site, make_api_key(alice)))

    assert set(statuses) == {200, 429}, statuses
    answers = list(Message.objects.filter(user=alice, is_answer=True))
    assert len(answers) == statuses.count(200)
    assert all(a.status == "completed" for a in answers)
    # The ledger holds exactly what the saved answers used.
    assert tokens_used_today(alice) == sum(tokens(a) for a in answers) > QUOTA
    # The moment the quota was reached: the end of the answer whose charge crossed it.
    by_end = sorted(answers, key=lambda a: a.created_at + ms(a.duration_ms))
    charged, reached_at = 0, None
    for answer in by_end:
        charged += tokens(answer)
        if charged >= QUOTA:
            reached_at = answer.created_at + ms(answer.duration_ms)
            break
    late = [a for a in answers if a.created_at > reached_at + SAVE_SLACK]
    assert not late, f"{len(late)} answers started after the quota was reached"


def ms(value: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=value)


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
