"""The site's JSON API for a user's conversations, by session or API key."""

import json

import pytest
from django.test import Client

from conversations.accounts.apikeys import api_key_revoke
from conversations.models import Conversation, Message
from tests.conftest import PASSWORD, log_in
from tests.sse_client import parse_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def with_key(alice, make_api_key) -> Client:
    return Client(headers={"Authorization": f"Bearer {make_api_key(alice)}"})


def conversation(owner, title="Trip", **extra) -> Conversation:
    found = Conversation.objects.create(owner=owner, title=title, model="dev/dev-chat", **extra)
    Message.objects.create(
        conversation=found, user=owner, role="user", content="Where to?", request_id=f"r{found.pk}"
    )
    return found


def test_list_shows_only_the_users_conversations_newest_first(alice_client, alice, bob):
    older, newer = conversation(alice, "Older"), conversation(alice, "Newer")
    conversation(bob, "Bob's")

    response = alice_client.get("/api/conversations/")

    assert response.status_code == 200
    data = response.json()
    assert [c["id"] for c in data["data"]] == [newer.pk, older.pk]
    assert data["has_more"] is False
    assert set(data["data"][0]) == {
        "id",
        "title",
        "model",
        "source",
        "created_at",
        "updated_at",
        "streaming_request_id",
    }


def test_list_is_paginated(with_key, alice):
    for n in range(3):
        conversation(alice, f"c{n}")
    first = with_key.get("/api/conversations/", {"limit": 2}).json()
    rest = with_key.get("/api/conversations/", {"limit": 2, "offset": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    assert len(rest["data"]) == 1 and rest["has_more"] is False


@pytest.mark.parametrize("query", [{"limit": "x"}, {"limit": "500"}, {"offset": "-1"}])
def test_bad_pagination_is_a_400_naming_the_field(alice_client, query):
    response = alice_client.get("/api/conversations/", query)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == next(iter(query))


def test_read_one_with_its_messages(with_key, alice):
    found = conversation(alice)
    data = with_key.get(f"/api/conversations/{found.pk}/").json()
    assert data["title"] == "Trip"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [("user", "Where to?")]
    assert data["messages"][0]["request_id"] == f"r{found.pk}"


def test_rename_with_an_api_key_needs_no_csrf_token(with_key, alice):
    found = conversation(alice)
    response = with_key.patch(
        f"/api/conversations/{found.pk}/",
        data=json.dumps({"title": "  Paris\\nin May "}),
        content_type="application/json",
    )
    assert response.status_code == 200
    found.refresh_from_db()
    assert found.title == response.json()["title"] == "Paris\\nin May"


@pytest.mark.parametrize("title", ["", "   ", 5, "x" * 201])
def test_bad_title_is_a_400_and_changes_nothing(alice_client, alice, title):
    found = conversation(alice)
    response = alice_client.patch(
        f"/api/conversations/{found.pk}/",
        data=json.dumps({"title": title}),
        content_type="application/json",
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "title"
    found.refresh_from_db()
    assert found.title == "Trip"


def test_delete_removes_the_conversation_and_its_messages(alice_client, alice):
    found = conversation(alice)
    assert alice_client.delete(f"/api/conversations/{found.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=found.pk).exists()
    assert not Message.objects.filter(conversation_id=found.pk).exists()


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_another_users_conversation_is_not_found(alice_client, bob, method):
    theirs = conversation(bob)
    url = f"/api/conversations/{theirs.pk}/"
    if method == "get":
        response = alice_client.get(url)
    else:
        body = json.dumps({"title": "Taken over"})
        response = getattr(alice_client, method)(url, data=body, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No such conversation."
    assert Conversation.objects.get(pk=theirs.pk).title == "Trip"


def test_sending_to_another_users_conversation_is_not_found(with_key, bob):
    theirs = conversation(bob)
    response = with_key.post(
        f"/api/conversations/{theirs.pk}/messages/",
        data=json.dumps({"message": "hi"}),
        content_type="application/json",
    )
    assert response.status_code == 404
    assert Message.objects.count() == 1


def test_anonymous_caller_is_a_401(db):
    response = Client().get("/api/conversations/")
    assert response.status_code == 401
    assert "API key" in response.json()["error"]["message"]


def test_revoked_key_is_a_401(alice, make_api_key):
    client = Client(headers={"Authorization": f"Bearer {make_api_key(alice)}"})
    assert client.get("/api/conversations/").status_code == 200
    api_key_revoke(user=alice, key_id=alice.api_keys.get().pk)
    response = client.get("/api/conversations/")
    assert response.status_code == 401


def test_session_writes_need_the_csrf_token(alice):
    found = conversation(alice)
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    response = client.delete(f"/api/conversations/{found.pk}/")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert Conversation.objects.filter(pk=found.pk).exists()


def test_unsupported_method_is_a_405(alice_client):
    response = alice_client.put("/api/conversations/")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, POST"


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_sending_a_message_streams_like_the_chat_page(site, alice, make_api_key):
    key = make_api_key(alice)
    client = log_in(site.url, "alice")
    client.headers = {"Authorization": f"Bearer {key}"}  # the key, not the session

    def stream(path, body):
        with client.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            events, _ = parse_events(response.read(), 0)
        return events

    started = stream("/api/conversations/", {"message": "[[devllm tokens=4]] hello"})
    conversation_id = started[0].data["conversation"]
    continued = stream(
        f"/api/conversations/{conversation_id}/messages/", {"message": "[[devllm tokens=3]] more"}
    )

    assert [e.name for e in started] == ["start"] + ["delta"] * 4 + ["done"]
    assert continued[0].data["conversation"] == conversation_id
    assert [e.name for e in continued].count("delta") == 3
    assert Message.objects.filter(conversation_id=conversation_id).count() == 4
    assert Conversation.objects.get(pk=conversation_id).source == "web"


def test_the_site_api_lists_conversations_by_source(alice_client, alice):
    Conversation.objects.create(owner=alice, title="From code", model="m", source="api")
    Conversation.objects.create(owner=alice, title="From the page", model="m")

    def titles(query: str) -> list[str]:
        response = alice_client.get(f"/api/conversations/{query}")
        return [c["title"] for c in response.json()["data"]]

    assert titles("?source=api") == ["From code"]
    assert titles("?source=web") == ["From the page"]
    assert sorted(titles("")) == ["From code", "From the page"]
    response = alice_client.get("/api/conversations/?source=mail")
    assert response.status_code == 400 and response.json()["error"]["field"] == "source"


def test_a_conversation_says_which_answer_is_still_streaming(alice_client, alice):
    writing = conversation(alice, title="Writing")
    done = conversation(alice, title="Done")
    for found, status in ((writing, "streaming"), (done, "completed")):
        Message.objects.create(
            conversation=found,
            user=alice,
            role="assistant",
            is_answer=True,
            status=status,
            request_id=f"answer-{found.pk}",
        )

    listed = {c["title"]: c for c in alice_client.get("/api/conversations/").json()["data"]}
    assert listed["Writing"]["streaming_request_id"] == f"answer-{writing.pk}"
    assert listed["Done"]["streaming_request_id"] is None
    one = alice_client.get(f"/api/conversations/{writing.pk}/").json()
    assert one["streaming_request_id"] == f"answer-{writing.pk}"
    renamed = alice_client.patch(
        f"/api/conversations/{done.pk}/",
        data={"title": "Still done"},
        content_type="application/json",
    ).json()
    assert renamed["streaming_request_id"] is None
