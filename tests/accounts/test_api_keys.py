"""API keys: shown once, stored as a hash, revocable, never logged."""

import io

import httpx
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from conversations.accounts.apikeys import hash_key
from conversations.models import ApiKey
from tests.conftest import openai_client

pytestmark = pytest.mark.django_db


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(alice_client, alice):
    created = alice_client.post("/settings/api-keys/", {"name": "laptop"})
    # POST-redirect-GET: the key is not in the redirect, and only the next GET shows it.
    assert created.status_code == 302 and created.url == "/settings/api-keys/"
    response = alice_client.get(created.url)

    raw_key = response.context["new_key"]
    assert raw_key.startswith("cs-") and len(raw_key) > 40
    assert raw_key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    stored = ApiKey.objects.get(user=alice)
    assert stored.name == "laptop"
    assert stored.key_hash == hash_key(raw_key)
    assert raw_key.startswith(stored.prefix) and len(stored.prefix) == 10
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM conversations_apikey")
        assert raw_key not in repr(cursor.fetchall())
    listing = alice_client.get("/settings/api-keys/").content.decode()
    assert stored.prefix in listing and raw_key not in listing
    assert raw_key not in repr(dict(alice_client.session))  # gone from the session too
    assert ApiKey.objects.filter(user=alice).count() == 1


def test_a_new_key_never_sits_readable_in_the_session_row(alice_client, alice):
    """The redirect after creating a key is not followed (a closed tab, a client that does
    not follow): the session, a database row, holds only half of a split that tells
    nothing alone; the other half is a cookie of the keys page that lapses in minutes."""
    created = alice_client.post("/settings/api-keys/", {"name": "laptop"})
    pad = created.cookies["new_api_key_pad"]

    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        stored = repr(cursor.fetchall())
    shown = alice_client.get("/settings/api-keys/").context["new_key"]

    assert shown.startswith("cs-") and ApiKey.objects.get(user=alice).key_hash == hash_key(shown)
    assert shown not in stored and shown[3:20] not in stored
    assert (pad["path"], pad["max-age"], pad["samesite"]) == ("/settings/api-keys/", 120, "Strict")
    assert pad["httponly"]
    # Either half alone shows nothing: a new session without the pad, the pad without it.
    again = alice_client.get("/settings/api-keys/")
    assert again.context["new_key"] is None


def test_a_bad_key_name_is_refused_in_the_page_without_creating_a_key(alice_client, alice):
    response = alice_client.post("/settings/api-keys/", {"name": "x" * 500})

    assert response.status_code == 400
    assert response.context["error"] in response.content.decode()
    assert response.context["new_key"] is None
    assert not ApiKey.objects.filter(user=alice).exists()


def test_a_user_revokes_their_own_key_and_not_another_users(alice_client, alice, bob, make_api_key):
    make_api_key(alice)
    make_api_key(bob)
    mine, theirs = ApiKey.objects.get(user=alice), ApiKey.objects.get(user=bob)

    assert alice_client.post(f"/settings/api-keys/{theirs.pk}/revoke/").status_code == 404
    assert alice_client.post(f"/settings/api-keys/{mine.pk}/revoke/").status_code == 302

    mine.refresh_from_db(), theirs.refresh_from_db()
    assert not mine.is_active and theirs.is_active
    assert "Revoked" in alice_client.get("/settings/api-keys/").content.decode()


def test_the_page_needs_a_login(db):
    assert Client().get("/settings/api-keys/").status_code == 302


def test_create_api_key_command_prints_a_working_key(alice):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "alice", "--name", "script", stdout=out, stderr=err)
    raw_key = out.getvalue().strip()
    assert ApiKey.objects.get(key_hash=hash_key(raw_key)).name == "script"
    assert raw_key not in err.getvalue()
    response = Client(headers={"Authorization": f"Bearer {raw_key}"}).get("/api/conversations/")
    assert response.status_code == 200
    assert ApiKey.objects.get(key_hash=hash_key(raw_key)).last_used_at is not None


def test_admin_lists_keys_without_their_hash_and_can_revoke(make_user, alice, make_api_key):
    make_api_key(alice)
    admin = Client()
    admin.force_login(make_user("root", is_staff=True, is_superuser=True))
    key = ApiKey.objects.get()

    page = admin.get(f"/admin/conversations/apikey/{key.pk}/change/").content.decode()
    assert key.key_hash not in page
    assert admin.get("/admin/conversations/apikey/add/").status_code == 403
    admin.post(
        "/admin/conversations/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    key.refresh_from_db()
    assert not key.is_active


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_keys_never_appear_in_the_servers_logs(site, devllm, alice, make_api_key):
    key = make_api_key(alice)
    sdk = openai_client(site, key)
    sdk.chat.completions.create(
        model="dev/dev-chat", messages=[{"role": "user", "content": "[[devllm tokens=2]] hi"}]
    )
    httpx.get(f"{site.url}/v1/models", headers={"Authorization": f"Bearer {key}x"})
    httpx.get(f"{site.url}/api/conversations/", headers={"Authorization": f"Bearer {key}"})

    assert key not in site.log() and key[10:] not in site.log()
    assert key not in devllm.log()
    assert "Unauthorized" in site.log()  # the refused call was logged, without its key
