"""The chat page: a user's own conversations and nothing else."""

import pytest
from django.test import Client

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def conversation_with_answer(owner, *, status="completed", content="An answer", error=""):
    conversation = Conversation.objects.create(owner=owner, title="Owned", model="dev/dev-chat")
    common = {"conversation": conversation, "user": owner, "request_id": f"r-{owner.pk}-{status}"}
    Message.objects.create(role="user", content="A <b>question</b>", **common)
    Message.objects.create(
        role="assistant",
        is_answer=True,
        content=content,
        status=status,
        error=error,
        reasoning="Hmm",
        **common,
    )
    return conversation


def test_anonymous_user_is_sent_to_log_in(db):
    response = Client().get("/chat/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_root_leads_to_the_chat(alice_client):
    assert alice_client.get("/")["Location"] == "/chat/"


def test_new_chat_lists_only_the_users_own_conversations(alice_client, alice, bob):
    conversation_with_answer(alice)
    Conversation.objects.create(owner=bob, title="Bob's secret", model="dev/dev-chat")

    response = alice_client.get("/chat/")

    assert response.status_code == 200
    assert b"Owned" in response.content
    assert b"Bob&#x27;s secret" not in response.content and b"Bob's secret" not in response.content
    assert b'value="dev/dev-chat" selected' in response.content
    assert b"Dev reasoner" in response.content


def test_conversation_page_shows_its_messages_escaped(alice_client, alice):
    conversation = conversation_with_answer(alice)

    response = alice_client.get(conversation.get_absolute_url())

    assert response.status_code == 200
    assert b"A &lt;b&gt;question&lt;/b&gt;" in response.content
    assert b"An answer" in response.content
    assert b"Thinking" in response.content


@pytest.mark.parametrize(
    ("status", "error", "marker"),
    [("stopped", "", b"Stopped"), ("failed", "The model could not be reached.", b"Failed: The")],
)
def test_stopped_and_failed_answers_are_marked(alice_client, alice, status, error, marker):
    conversation = conversation_with_answer(alice, status=status, error=error)
    response = alice_client.get(conversation.get_absolute_url())
    assert marker in response.content
    assert f'data-status="{status}"'.encode() in response.content


def test_another_users_conversation_is_not_found(alice_client, bob):
    theirs = conversation_with_answer(bob)
    assert alice_client.get(theirs.get_absolute_url()).status_code == 404


def test_missing_conversation_is_not_found(alice_client):
    assert alice_client.get("/chat/999999/").status_code == 404


def test_superseded_messages_are_not_shown(alice_client, alice):
    conversation = conversation_with_answer(alice, content="The old answer")
    conversation.messages.filter(role="assistant").update(superseded_at="2026-01-01T00:00:00Z")
    response = alice_client.get(conversation.get_absolute_url())
    assert b"The old answer" not in response.content
    assert b"A &lt;b&gt;question&lt;/b&gt;" in response.content


def test_the_sidebar_lists_web_chats_only_in_a_bounded_number_of_queries(
    alice_client, alice, django_assert_max_num_queries
):
    Conversation.objects.bulk_create(
        Conversation(owner=alice, title=f"API call {n}", model="dev/dev-chat", source="api")
        for n in range(2000)
    )
    Conversation.objects.bulk_create(
        Conversation(owner=alice, title=f"Web chat {n}", model="dev/dev-chat") for n in range(20)
    )

    with django_assert_max_num_queries(6):
        response = alice_client.get("/chat/")

    listed = [c.title for _, group in response.context["conversation_groups"] for c in group]
    assert sorted(listed) == sorted(f"Web chat {n}" for n in range(20))
    assert b"API call" not in response.content
