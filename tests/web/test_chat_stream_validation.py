"""Bad input to the chat stream gets a clear 4xx with a JSON message, and writes nothing."""

import json

import pytest
from django.test import Client

from conversations.models import Conversation, Message
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

URL = "/chat/stream/"


def post(client: Client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **extra)


def assert_rejected(response, status: int, fragment: str, field: str | None = None) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert len(response["X-Request-ID"]) == 32
    error = response.json()["error"]
    assert fragment in error["message"]
    if field:
        assert error["field"] == field
    assert Message.objects.count() == 0


def test_empty_message_is_refused(alice_client):
    assert_rejected(post(alice_client, {"message": "   \n"}), 400, "empty", "message")


def test_missing_message_is_refused(alice_client):
    assert_rejected(post(alice_client, {"model": "dev/dev-chat"}), 400, "must be text", "message")


def test_too_long_message_is_refused(alice_client, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    assert_rejected(post(alice_client, {"message": "x" * 101}), 400, "too long", "message")


def test_oversized_body_is_refused_with_413(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_rejected(post(alice_client, {"message": "x" * 2000}), 413, "too large")


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", ""])
def test_malformed_json_is_refused(alice_client, body):
    assert_rejected(post(alice_client, body), 400, "JSON")


def test_unknown_model_is_refused(alice_client):
    response = post(alice_client, {"message": "hi", "model": "dev/no-such-model"})
    assert_rejected(response, 400, "Unknown model", "model")


@pytest.mark.parametrize("conversation", ["1", -1, 1.5, True])
def test_malformed_conversation_id_is_refused(alice_client, conversation):
    response = post(alice_client, {"message": "hi", "conversation": conversation})
    assert_rejected(response, 400, "conversation", "conversation")


def test_another_users_conversation_is_not_found(alice_client, bob):
    theirs = Conversation.objects.create(owner=bob, title="Bob's", model="dev/dev-chat")
    response = post(alice_client, {"message": "hi", "conversation": theirs.pk})
    assert_rejected(response, 404, "No such conversation", "conversation")
    theirs.refresh_from_db()
    assert theirs.model == "dev/dev-chat"


def test_anonymous_user_is_refused(db):
    assert_rejected(post(Client(), {"message": "hi"}), 401, "Log in")


def test_missing_csrf_token_is_refused(alice):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="alice", password=PASSWORD)
    response = post(client, {"message": "hi"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert Message.objects.count() == 0


def test_get_is_not_allowed(alice_client):
    assert alice_client.get(URL).status_code == 405


def test_reused_request_id_is_a_conflict_and_writes_nothing_more(alice_client, alice):
    conversation = Conversation.objects.create(owner=alice, title="t", model="dev/dev-chat")
    for role in ("user", "assistant"):
        Message.objects.create(
            conversation=conversation,
            user=alice,
            role=role,
            is_answer=role == "assistant",
            content="x",
            request_id="dup-0000001",
        )
    response = post(alice_client, {"message": "hi"}, HTTP_X_REQUEST_ID="dup-0000001")
    assert response.status_code == 409
    assert "already used" in response.json()["error"]["message"]
    assert Message.objects.count() == 2
    assert Conversation.objects.count() == 1


def test_unknown_action_is_refused(alice_client):
    response = post(alice_client, {"message": "hi", "action": "delete"})
    assert_rejected(response, 400, "action must be one of", "action")


@pytest.mark.parametrize("action", ["regenerate", "edit"])
def test_regenerate_and_edit_need_a_conversation(alice_client, action):
    response = post(alice_client, {"message": "hi", "action": action})
    assert_rejected(response, 400, "name the conversation", "conversation")
