"""Admission on a request's path (conversations.accounts.limits.admit_chat_request) with Redis: once
the process has a copy of the user's overrides, a request is counted and leased in one Redis
round trip, from the event loop, with no worker thread; and the count it keeps is the one
django-ratelimit reads."""

import asyncio
import uuid

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from conversations import redis_async
from conversations.accounts.leases import stream_leases
from conversations.accounts.limits import COUNT_GROUP, RateLimited, admit_chat_request
from tests.turns.test_eventlog import CountingConnection

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_limits(settings):
    """Limits kept in Redis, under a key prefix of this test's own."""
    settings.REDIS_URL = REDIS_URL
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"admission-test-{uuid.uuid4().hex[:12]}",
        }
    }
    settings.PROCESS_CACHE_SECONDS = 30
    settings.RATE_LIMIT_PER_MINUTE, settings.MAX_CONCURRENT_STREAMS = 3, 2
    stream_leases.cache_clear()
    yield
    stream_leases.cache_clear()
    redis_async.reset_redis_clients()
    # The overrides were read in asgiref's one thread for thread-sensitive work outside a
    # request: close its connection there, or the test database could not be dropped.
    asyncio.run(sync_to_async(connections.close_all)())


def test_a_warm_admission_is_one_redis_round_trip_and_no_thread(redis_limits, alice, thread_hops):
    async def admit_twice() -> tuple[int, list[str]]:
        # The loop's client, counting its round trips.
        redis_async._clients[asyncio.get_running_loop()] = redis.asyncio.Redis.from_url(
            REDIS_URL, connection_class=CountingConnection
        )
        first = await admit_chat_request(alice)  # reads the overrides, keeps a copy
        await first.lease.release()
        thread_hops.clear()
        sends = CountingConnection.sends
        second = await admit_chat_request(alice)
        round_trips, hops = CountingConnection.sends - sends, list(thread_hops)
        await second.lease.release()
        return round_trips, hops

    round_trips, hops = asyncio.run(admit_twice())

    assert round_trips == 1
    assert hops == []


def test_the_count_is_django_ratelimits_and_refusals_hold_no_lease(redis_limits, alice):
    async def admit(times: int) -> list:
        admissions = []
        for _ in range(times):
            try:
                admissions.append(await admit_chat_request(alice))
            except RateLimited as refused:
                admissions.append(refused)
        return admissions

    results = asyncio.run(admit(4))

    # Two streams at most, three requests a minute: the third is refused for the stream
    # limit (but counted, as django-ratelimit counts every request), the fourth for the rate.
    assert [type(r).__name__ for r in results] == [
        "Admission",
        "Admission",
        "RateLimited",
        "RateLimited",
    ]
    assert "streaming" in str(results[2]) and "a minute" in str(results[3])
    assert stream_leases().held(alice.pk) == 2
    usage = get_usage(
        HttpRequest(),
        group=COUNT_GROUP,
        key=lambda group, request: str(alice.pk),
        rate="3/m",
        increment=False,
    )
    assert (usage["count"], usage["should_limit"]) == (4, True)
    assert results[0].headers["x-ratelimit-remaining-requests"] == "2"
