"""API keys are answered from the process's own copy (conversations.accounts.local_cache): no
query on a hit, and forgotten at once, in every process, when a key is revoked or its owner
changes."""

import asyncio
import logging
import time
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.test import AsyncClient, Client, RequestFactory
from django.test.utils import CaptureQueriesContext, override_settings

from conversations import bus
from conversations.accounts import apikeys, local_cache
from conversations.accounts.apikeys import api_key_revoke
from conversations.accounts.auth import api_key_user
from conversations.accounts.local_cache import ProcessCache, aforget_user, receive_forget
from conversations.models import ApiKey
from tests.conftest import log_in, two_sites_sharing_redis
from tests.servers import free_port
from tests.waiting import wait_for

MODELS = "/v1/models"
# Long enough that only a notice, never the lifetime, can explain a refusal in these tests.
CACHING = override_settings(PROCESS_CACHE_SECONDS=600)


def key_client(key: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {key}"})


def queries_of_a_call(client: Client, status: int) -> list[str]:
    """The SQL of one more call to /v1/models, which must answer `status`."""
    with CaptureQueriesContext(connection) as queries:
        assert client.get(MODELS).status_code == status
    return [query["sql"] for query in queries]


def forget_notice(user_id: int) -> dict:
    return {"type": local_cache.USER_CHANGED, "user_id": user_id}


# The cache itself -------------------------------------------------------------------------


@CACHING
def test_a_copy_is_kept_until_a_notice_forgets_its_user():
    cache = ProcessCache("test-notice")
    for key, user_id in (("a", 1), ("b", 2)):
        assert cache.get(key) is None
        cache.put(key, key.upper(), user_id=user_id)

    receive_forget(forget_notice(1))

    assert (cache.get("a"), cache.get("b")) == (None, "B")


def test_a_copy_expires_after_process_cache_seconds():
    cache = ProcessCache("test-expiry")
    with override_settings(PROCESS_CACHE_SECONDS=0.2):
        cache.get("a")
        cache.put("a", "A", user_id=1)
        assert cache.get("a") == "A"
        time.sleep(0.3)
        assert cache.get("a") is None


@CACHING
def test_the_oldest_copies_go_beyond_the_size_bound(monkeypatch):
    monkeypatch.setattr(local_cache, "MAX_ENTRIES", 3)
    cache = ProcessCache("test-bound")
    for n in range(4):
        cache.get(n)
        cache.put(n, n, user_id=n)

    assert [cache.get(n) for n in range(4)] == [None, 1, 2, 3]


@CACHING
def test_a_row_read_before_a_forget_is_not_kept():
    """A request that missed, then read the row while it was being changed elsewhere, must
    not keep what it read: the change's notice may already have come and gone."""
    cache = ProcessCache("test-race")
    assert cache.get("a") is None
    receive_forget(forget_notice(7))
    cache.put("a", "stale", user_id=1)
    assert cache.get("a") is None

    cache.put("a", "fresh", user_id=1)
    assert cache.get("a") == "fresh"


@CACHING
def test_aforget_user_drops_here_and_tells_every_process():
    cache = ProcessCache("test-aforget")
    cache.get("a")
    cache.put("a", "A", user_id=5)

    async def forget_and_listen() -> dict:
        # Listen as every server process does (conversations.bus, its control lane).
        layer = get_channel_layer(bus.CONTROL.alias)
        channel = await layer.new_channel()
        await layer.group_add(bus.CONTROL.group, channel)
        try:
            await aforget_user(5)
            assert cache.get("a") is None
            async with asyncio.timeout(5):
                while (message := await layer.receive(channel)) != forget_notice(5):
                    pass  # another test run's notice, on a shared Redis
            return message
        finally:
            await layer.group_discard(bus.CONTROL.group, channel)

    assert async_to_sync(forget_and_listen)() == forget_notice(5)


@override_settings(PROCESS_CACHE_SECONDS=0)
def test_with_process_cache_seconds_zero_nothing_is_kept():
    cache = ProcessCache("test-off")
    cache.get("a")
    cache.put("a", "A", user_id=1)
    assert cache.get("a") is None


# API keys in this process ------------------------------------------------------------------


@pytest.mark.django_db
@CACHING
def test_a_known_key_is_answered_without_a_query(alice, make_api_key):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200

    assert queries_of_a_call(client, 200) == []


@pytest.mark.django_db
@override_settings(PROCESS_CACHE_SECONDS=0)
def test_with_process_cache_seconds_zero_every_call_reads_the_key(alice, make_api_key):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200

    assert any("conversations_apikey" in sql for sql in queries_of_a_call(client, 200))


@pytest.mark.django_db
@CACHING
def test_an_unknown_key_is_read_each_time(alice):
    client = key_client("cs-not-a-real-key")
    assert client.get(MODELS).status_code == 401

    assert any("conversations_apikey" in sql for sql in queries_of_a_call(client, 401))


@pytest.mark.django_db
@CACHING
def test_each_request_gets_its_own_copy_of_the_user(alice, make_api_key):
    request = RequestFactory().get(
        MODELS, headers={"Authorization": f"Bearer {make_api_key(alice)}"}
    )
    first = async_to_sync(api_key_user)(request)
    first.first_name = "changed by one request"
    second = async_to_sync(api_key_user)(request)

    assert second is not first and second.pk == alice.pk
    assert second.first_name == ""


@pytest.mark.django_db
@CACHING
def test_deactivating_the_user_refuses_the_key_at_once(alice, make_api_key):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200

    alice.is_active = False
    alice.save()

    assert client.get(MODELS).status_code == 401


@pytest.mark.django_db
@CACHING
def test_logging_in_keeps_the_copy(alice, make_api_key):
    """Logging in saves last_login alone: the next call is still answered from the copy."""
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200
    assert Client().login(username="alice", password="a-long-test-password")

    assert queries_of_a_call(client, 200) == []


@pytest.mark.django_db
@CACHING
@pytest.mark.parametrize("deleted", ["key", "user"])
def test_deleting_the_key_or_its_user_refuses_it_at_once(alice, make_api_key, deleted):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200

    (ApiKey.objects.get(user=alice) if deleted == "key" else alice).delete()

    assert client.get(MODELS).status_code == 401


@pytest.mark.django_db
@CACHING
def test_revoking_through_the_service_refuses_the_key_at_once(alice, make_api_key):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200

    assert api_key_revoke(user=alice, key_id=ApiKey.objects.get(user=alice).pk)

    assert client.get(MODELS).status_code == 401


@pytest.mark.django_db
@CACHING
def test_the_admins_revoke_action_refuses_the_key_at_once(make_user, alice, make_api_key):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200
    admin = Client()
    admin.force_login(make_user("root", is_staff=True, is_superuser=True))

    admin.post(
        "/admin/conversations/apikey/",
        {"action": "revoke", "_selected_action": [ApiKey.objects.get(user=alice).pk]},
    )

    assert client.get(MODELS).status_code == 401


@pytest.mark.django_db
@CACHING
def test_a_notice_that_cannot_be_sent_does_not_fail_the_revocation(
    alice, make_api_key, caplog, django_capture_on_commit_callbacks
):
    client = key_client(make_api_key(alice))
    assert client.get(MODELS).status_code == 200
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    layers = {
        alias: {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [nowhere]}}
        for alias in ("default", "control", "readers")
    }

    with (
        override_settings(CHANNEL_LAYERS=layers),
        caplog.at_level(logging.WARNING, logger="conversations.accounts.local_cache"),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        assert api_key_revoke(user=alice, key_id=ApiKey.objects.get(user=alice).pk)

    assert len(callbacks) == 1
    assert "Could not tell other processes" in caplog.text
    assert client.get(MODELS).status_code == 401


@pytest.mark.django_db(transaction=True)
@CACHING
def test_a_hit_records_the_keys_use_in_the_background(alice, make_api_key, monkeypatch):
    monkeypatch.setattr(apikeys, "LAST_USED_RESOLUTION", timedelta(0))
    key = make_api_key(alice)

    async def two_calls() -> None:
        client, headers = AsyncClient(), {"Authorization": f"Bearer {key}"}
        assert (await client.get(MODELS, headers=headers)).status_code == 200
        recorded = ApiKey.objects.filter(user=alice).values_list("last_used_at", flat=True)
        first_use = await recorded.aget()
        # Behind the cache's back (no signal): only the process's copy can answer now.
        await ApiKey.objects.filter(user=alice).aupdate(revoked_at="2026-01-01T00:00:00Z")
        assert (await client.get(MODELS, headers=headers)).status_code == 200
        # The request's loop must keep running meanwhile: it runs the background write.
        await sync_to_async(wait_for)(lambda: recorded.get() != first_use, timeout=5)

    async_to_sync(two_calls)()


# Across server processes -------------------------------------------------------------------


def calls_with(site, key: str) -> int:
    return httpx.get(site.url + MODELS, headers={"Authorization": f"Bearer {key}"}).status_code


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_revoking_on_another_process_refuses_the_key_here_at_once(
    site_env, server_logs, make_user, alice, bob, make_api_key
):
    """Alice revokes her key on the API keys page, staff revoke Bob's with the admin's
    action, both on the second process; the first, which had both keys in its copy for ten
    minutes more, refuses them at once. Alice's other key still works."""
    make_user("root", is_staff=True, is_superuser=True)
    alices, alices_other, bobs = make_api_key(alice), make_api_key(alice), make_api_key(bob)
    env = {**site_env, "PROCESS_CACHE_SECONDS": "600"}
    with two_sites_sharing_redis(env, server_logs, "key-cache") as (first, second):
        assert [calls_with(first, key) for key in (alices, alices_other, bobs)] == [200] * 3
        alices_id = ApiKey.objects.get(key_hash=apikeys.hash_key(alices)).pk
        bobs_id = ApiKey.objects.get(user=bob).pk

        page = log_in(second.url, "alice").post(f"/settings/api-keys/{alices_id}/revoke/")
        admin = log_in(second.url, "root").post(
            "/admin/conversations/apikey/", data={"action": "revoke", "_selected_action": bobs_id}
        )
        assert (page.status_code, admin.status_code) == (302, 302)

        # The notice travels through Redis to the first process's listener: a few
        # milliseconds, where the copies would otherwise last ten minutes.
        wait_for(lambda: calls_with(first, alices) == calls_with(first, bobs) == 401, timeout=1)
        assert calls_with(first, alices_other) == 200
