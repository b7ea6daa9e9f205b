"""Stream leases, on real Redis and in process: at most `limit` per user, a refusal extends
nothing, a lease that is not renewed lapses by itself (a dead process locks nobody out)."""

import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from conversations.accounts.leases import (
    MemoryStreamLeases,
    RedisStreamLeases,
    StreamLeases,
)

# A short lease, so that lapsing is quick to see; renewed four times a term, a renewal may be
# late by three quarters of one (a loaded machine) and the lease still hold.
TERM = 1.0


@pytest.fixture(params=["redis", "memory"])
def leases(request) -> Iterator[StreamLeases]:
    if request.param == "memory":
        yield MemoryStreamLeases(lease_seconds=TERM)
        return
    client = redis.Redis.from_url(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    prefix = f"test-leases-{time.monotonic_ns()}"
    yield RedisStreamLeases(client, key_prefix=prefix, lease_seconds=TERM)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_at_most_limit_leases_per_user_and_each_user_has_their_own(leases):
    held = [leases.acquire(1, 2), leases.acquire(1, 2)]
    assert all(held)
    assert leases.acquire(1, 2) is None
    assert leases.acquire(2, 2) is not None
    assert leases.held(1) == 2

    leases.release(held[0])
    leases.release(held[0])  # twice is harmless
    assert leases.held(1) == 1
    assert leases.acquire(1, 2) is not None


def test_a_client_retrying_as_told_gets_in_when_the_dead_leases_lapse(leases):
    # Two leases of a process that died: nobody renews or releases them.
    assert leases.acquire(7, 2) and leases.acquire(7, 2)
    deadline = time.monotonic() + TERM * 5
    admitted = None
    while admitted is None:  # refused ones must not push the lapse back
        assert time.monotonic() < deadline, "the user stayed locked out"
        admitted = leases.acquire(7, 2)
        time.sleep(0.05)
    assert leases.held(7) == 1


def test_a_renewed_lease_outlives_its_first_term(leases):
    lease = leases.acquire(3, 1)
    for _ in range(6):  # a term and a half
        time.sleep(TERM / 4)
        leases.renew(lease)
    assert leases.held(3) == 1
    assert leases.acquire(3, 1) is None
    time.sleep(TERM * 1.5)  # not renewed any more: it lapses
    assert leases.held(3) == 0
    leases.renew(lease)  # renewing a lapsed lease does not bring it back
    assert leases.held(3) == 0


def test_the_redis_key_goes_with_its_last_lease():
    client = redis.Redis.from_url(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    leases = RedisStreamLeases(
        client, key_prefix=f"test-leases-{time.monotonic_ns()}", lease_seconds=TERM
    )
    lease = leases.acquire(9, 3)
    assert client.exists(leases.key(9))
    time.sleep(TERM * 1.5)
    assert not client.exists(leases.key(9))
    leases.release(lease)
    client.close()
