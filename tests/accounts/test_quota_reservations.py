"""The daily token quota reserves what a request may cost before its answer starts (its prompt,
estimated, and its max_tokens or a default answer), beside what the user's running answers
reserved; what does not fit is refused before anything is written, and a reservation goes
with its answer's lease. On real Redis (one script, one round trip) and in process."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from conversations import redis_async, services
from conversations.accounts import limits
from conversations.accounts.leases import stream_leases
from conversations.accounts.limits import RateLimited, TokenNeed, admit_chat_request

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/0"
QUOTA = 1000


@pytest.fixture(params=["redis", "memory"])
def quota_limits(request, settings):
    """A daily quota of QUOTA tokens and a default answer of 400, with the leases in Redis
    (under a prefix of this test's own) or in this process."""
    if request.param == "redis":
        settings.REDIS_URL = REDIS_URL
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": f"quota-test-{uuid.uuid4().hex[:12]}",
            }
        }
    else:
        settings.REDIS_URL = ""
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.DAILY_TOKEN_QUOTA, settings.DAILY_TOKEN_QUOTA_ANSWER_TOKENS = QUOTA, 400
    settings.RATE_LIMIT_PER_MINUTE, settings.MAX_CONCURRENT_STREAMS = 100, 10
    stream_leases.cache_clear()
    yield
    stream_leases.cache_clear()
    redis_async.reset_redis_clients()
    asyncio.run(sync_to_async(connections.close_all)())


async def admit(user, need: TokenNeed):
    try:
        return await admit_chat_request(user, need)
    except RateLimited as refused:
        return refused


def test_a_prompt_larger_than_what_is_left_is_refused_and_says_what_it_needs(quota_limits, alice):
    services.usage_charge(user_id=alice.pk, tokens=784)  # 216 left, as in the audit

    refused = asyncio.run(admit(alice, TokenNeed(prompt=600_000, answer=None)))

    assert isinstance(refused, RateLimited) and refused.kind == "tokens"
    assert "needs about 600000 tokens" in refused.message
    assert "more than the 216 left" in refused.message
    assert refused.headers["x-ratelimit-remaining-tokens"] == "216"
    assert stream_leases().held(alice.pk) == 0  # a refusal holds nothing


def test_a_request_with_max_tokens_reserves_its_prompt_and_max_tokens(quota_limits, alice):
    async def scenario() -> list:
        first = await admit(alice, TokenNeed(prompt=100, answer=500))  # reserves 600
        second = await admit(alice, TokenNeed(prompt=100, answer=350))  # 450 > the 400 left
        fits = await admit(alice, TokenNeed(prompt=100, answer=300))  # 400: exactly fits
        await first.lease.release()
        after = await admit(alice, TokenNeed(prompt=100, answer=350))  # first's reserve freed
        for admission in (fits, after):
            await admission.lease.release()
        return [first, second, fits, after]

    first, second, fits, after = asyncio.run(scenario())

    assert isinstance(second, RateLimited) and second.kind == "tokens"
    assert "still running have reserved" in second.message
    assert int(second.headers["Retry-After"]) <= 5
    assert not any(isinstance(a, RateLimited) for a in (first, fits, after))
    assert (first.lease.lease.tokens, fits.lease.lease.tokens) == (600, 400)


def test_without_max_tokens_an_answer_reserves_the_default_or_what_is_left(quota_limits, alice):
    services.usage_charge(user_id=alice.pk, tokens=QUOTA - 250)  # 250 left, less than 400

    async def scenario() -> list:
        first = await admit(alice, TokenNeed(prompt=50))  # 50 and the 200 left for its answer
        second = await admit(alice, TokenNeed(prompt=50))  # nothing left beside the first
        await first.lease.release()
        return [first, second]

    first, second = asyncio.run(scenario())

    assert first.lease.lease.tokens == 250
    assert isinstance(second, RateLimited) and "reserved" in second.message


def test_a_quota_used_up_says_so_and_when_it_renews(quota_limits, alice):
    services.usage_charge(user_id=alice.pk, tokens=QUOTA)

    refused = asyncio.run(admit(alice, TokenNeed(prompt=10)))

    assert isinstance(refused, RateLimited) and refused.kind == "tokens"
    assert f"used your daily quota of {QUOTA} tokens" in refused.message
    assert "renews in" in refused.message


def test_an_answer_ending_between_the_ledger_read_and_the_lease_is_still_counted(
    quota_limits, alice, monkeypatch
):
    """The race a loaded CI run showed (six answers charged 312 of a 300 quota): an answer
    that ends after the admission read the ledger and before it took its lease is charged
    after the read and gives its reservation back before the lease, so it was counted in
    neither. A hook makes it end exactly there."""
    real_read = limits._used_and_context

    async def scenario() -> list:
        running = await admit(alice, TokenNeed(prompt=100, answer=500))  # reserves 600

        def read_then_the_running_answer_ends(user, conversation_id):
            read = real_read(user, conversation_id)
            services.usage_charge(user_id=alice.pk, tokens=600)  # saved: charged...
            asyncio.run(running.lease.release())  # ...then its lease given back
            return read

        monkeypatch.setattr(limits, "_used_and_context", read_then_the_running_answer_ends)
        late = await admit(alice, TokenNeed(prompt=100, answer=350))  # 450 > the 400 left
        monkeypatch.setattr(limits, "_used_and_context", real_read)
        fits = await admit(alice, TokenNeed(prompt=100, answer=300))  # 400: exactly fits
        for admission in (late, fits):
            if not isinstance(admission, RateLimited):
                await admission.lease.release()
        return [running, late, fits]

    running, late, fits = asyncio.run(scenario())

    assert not isinstance(running, RateLimited)
    assert isinstance(late, RateLimited) and late.kind == "tokens", late
    assert not isinstance(fits, RateLimited)
    assert stream_leases().reserved(alice.pk) == 0  # the refused request holds nothing
