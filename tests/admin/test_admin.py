"""Staff review saved conversations in the admin."""

import re

import pytest
from django.test import Client

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(make_user) -> Client:
    admin = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def saved_turn(alice):
    conversation = Conversation.objects.create(owner=alice, title="Weather", model="dev/dev-chat")
    for role in ("user", "assistant"):
        Message.objects.create(
            conversation=conversation,
            user=alice,
            role=role,
            is_answer=role == "assistant",
            content=f"{role} text",
            request_id="req-admin-0001",
            status="stopped" if role == "assistant" else "completed",
        )
    return conversation


def test_conversation_list_shows_owner_model_and_message_count(staff_client, saved_turn):
    response = staff_client.get("/admin/conversations/conversation/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Weather" in content and "alice" in content and "dev/dev-chat" in content
    assert '<td class="field-message_count">2</td>' in content


def test_searching_a_request_id_finds_its_conversation(staff_client, saved_turn, alice):
    Conversation.objects.create(owner=alice, title="Unrelated", model="dev/dev-chat")
    response = staff_client.get("/admin/conversations/conversation/", {"q": "req-admin-0001"})
    assert "Weather" in response.content.decode()
    assert "Unrelated" not in response.content.decode()


def test_message_list_filters_by_status(staff_client, saved_turn):
    response = staff_client.get("/admin/conversations/message/", {"status__exact": "stopped"})
    assert response.status_code == 200
    assert "assistant text" not in response.content.decode()  # content is not a list column
    assert response.context["cl"].result_count == 1


def test_plain_user_cannot_reach_the_admin(alice):
    client = Client()
    client.force_login(alice)
    assert client.get("/admin/conversations/conversation/").status_code == 302


def test_message_list_filters_by_model_with_a_named_link_for_each_choice(staff_client, saved_turn):
    Message.objects.filter(role="assistant").update(model="dev/dev-chat")

    response = staff_client.get("/admin/conversations/message/")

    links = re.findall(r'<a href="\?model=([^"]*)"[^>]*>([^<]*)</a>', response.content.decode())
    assert links, "no model filter"
    assert all(text.strip() for _, text in links), links  # no link without text
    assert ("dev%2Fdev-chat", "Dev chat (development server) (dev/dev-chat)") in links
    by_model = staff_client.get("/admin/conversations/message/", {"model": "dev/dev-chat"})
    assert by_model.context["cl"].result_count == 1
    sent = staff_client.get("/admin/conversations/message/", {"model": "-"})
    assert [m.role for m in sent.context["cl"].result_list] == ["user"]


@pytest.mark.parametrize(
    "url", ["/admin/conversations/conversation/usage/", "/admin/conversations/message/running/"]
)
def test_the_staff_pages_of_our_own_have_djangos_breadcrumb_list(staff_client, url):
    content = staff_client.get(url).content.decode()

    assert '<ol class="breadcrumbs">' in content
    assert '<li aria-current="page">' in content
