"""Versions: regenerated answers and edited questions stay reachable as branches of a web
chat's tree, and the thread (and so the model's context) follows the branch shown."""

import dataclasses
import importlib

import pytest
from django.apps import apps as django_apps
from django.test import Client

from conversations import selectors, services
from conversations.exceptions import ConversationNotFound, InvalidChatRequest, StaleConversation
from conversations.models import Conversation, Message
from tests.test_services import finished, start

pytestmark = pytest.mark.django_db

COMMON = {"model_key": "dev/dev-chat"}


def answer(turn, content):
    services.save_finished_turn(dataclasses.replace(finished(turn), content=content))
    return turn


def shown(conversation_id) -> list[str]:
    conversation = Conversation.objects.get(pk=conversation_id)
    return [m.content for m in selectors.conversation_messages(conversation=conversation)]


def regenerate(user, conversation_id, request_id, message_id=None):
    return services.turn_regenerate(
        user=user,
        conversation_id=conversation_id,
        request_id=request_id,
        message_id=message_id,
        **COMMON,
    )


def edit(user, conversation_id, request_id, message_id, content):
    return services.turn_edit(
        user=user,
        conversation_id=conversation_id,
        request_id=request_id,
        message_id=message_id,
        content=content,
        **COMMON,
    )


def two_turns(user):
    """Q1 A1 Q2 A2, answered."""
    first = answer(start(user, "req-v-q1", content="Q1"), "A1")
    second = answer(
        start(user, "req-v-q2", conversation_id=first.conversation_id, content="Q2"), "A2"
    )
    return first, second


def test_regenerating_twice_keeps_three_versions_and_each_can_be_shown(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    v2 = answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    answer(regenerate(alice, cid, "req-v-r2", v2.assistant_message_id), "A2 third")
    conversation = Conversation.objects.get(pk=cid)

    thread = selectors.conversation_thread(conversation=conversation)
    assert [m.content for m in thread] == ["Q1", "A1", "Q2", "A2 third"]
    last = thread[-1].versions
    assert (last.number, last.count) == (3, 3)
    assert last.previous_id == v2.assistant_message_id and last.next_id is None
    assert thread[0].versions is None  # one version: no switcher

    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=second.assistant_message_id
    )
    thread = selectors.conversation_thread(conversation=conversation)
    assert [m.content for m in thread] == ["Q1", "A1", "Q2", "A2"]
    assert (thread[-1].versions.number, thread[-1].versions.next_id) == (
        1,
        v2.assistant_message_id,
    )
    # Every version is still a record, whichever is shown.
    assert Message.objects.filter(conversation_id=cid, role="assistant").count() == 4


def test_the_next_question_follows_the_version_shown(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=second.assistant_message_id
    )

    third = start(alice, "req-v-q3", conversation_id=cid, content="Q3")

    assert [m["content"] for m in third.history] == ["Q1", "A1", "Q2", "A2", "Q3"]
    assert Message.objects.get(pk=third.user_message_id).parent_id == (second.assistant_message_id)


def test_editing_an_earlier_question_branches_and_asks_the_branch_history(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id

    edited = edit(alice, cid, "req-v-e1", first.user_message_id, "Q1 edited")

    # The model is asked from the edited question, without anything that followed the old.
    assert [m["content"] for m in edited.history] == ["Q1 edited"]
    assert set(edited.replaces) == {
        first.user_message_id,
        first.assistant_message_id,
        second.user_message_id,
        second.assistant_message_id,
    }
    answer(edited, "A1 to the edit")
    conversation = Conversation.objects.get(pk=cid)
    thread = selectors.conversation_thread(conversation=conversation)
    assert [m.content for m in thread] == ["Q1 edited", "A1 to the edit"]
    assert (thread[0].versions.number, thread[0].versions.count) == (2, 2)

    # Back to the first version of the question: its whole old branch comes back.
    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=first.user_message_id
    )
    assert shown(cid) == ["Q1", "A1", "Q2", "A2"]
    # And forward again: the edited branch, as it was last shown.
    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=edited.user_message_id
    )
    assert shown(cid) == ["Q1 edited", "A1 to the edit"]


def test_a_branch_comes_back_with_the_versions_last_shown_below(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    # Under A2 version 2 the user went back to version 1: that is what was shown last.
    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=second.assistant_message_id
    )
    answer(edit(alice, cid, "req-v-e1", first.user_message_id, "Other Q1"), "Other A1")

    services.conversation_show_version(
        user=alice, conversation_id=cid, message_id=first.user_message_id
    )

    assert shown(cid) == ["Q1", "A1", "Q2", "A2"]


def test_acting_on_a_version_no_longer_shown_is_stale_and_writes_nothing(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    rows = Message.objects.count()

    with pytest.raises(StaleConversation):
        regenerate(alice, cid, "req-v-r2", second.assistant_message_id)
    with pytest.raises(StaleConversation):
        edit(alice, cid, "req-v-e1", second.assistant_message_id, "an answer is not a question")
    assert Message.objects.count() == rows


def test_showing_a_version_is_scoped_to_the_owner_and_to_web_chats(alice, bob):
    first, _ = two_turns(alice)
    cid = first.conversation_id
    with pytest.raises(ConversationNotFound):
        services.conversation_show_version(
            user=bob, conversation_id=cid, message_id=first.user_message_id
        )
    api = Conversation.objects.create(owner=alice, model="dev/dev-chat", source="api")
    with pytest.raises(ConversationNotFound):
        services.conversation_show_version(
            user=alice, conversation_id=api.pk, message_id=first.user_message_id
        )
    other = answer(start(alice, "req-v-other", content="elsewhere"), "there")
    with pytest.raises(InvalidChatRequest):
        services.conversation_show_version(
            user=alice, conversation_id=cid, message_id=other.user_message_id
        )
    assert shown(cid) == ["Q1", "A1", "Q2", "A2"]


def test_no_version_is_switched_while_an_answer_is_written(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    regenerate(alice, cid, "req-v-r1", second.assistant_message_id)  # still streaming

    with pytest.raises(StaleConversation, match="still being written"):
        services.conversation_show_version(
            user=alice, conversation_id=cid, message_id=second.assistant_message_id
        )


def test_the_migration_gives_old_linear_chats_their_tree(alice):
    """Chats saved before versions: a regenerated answer and an edited last question."""
    conversation = Conversation.objects.create(owner=alice, model="dev/dev-chat")
    made = {}

    def add(key, role, request_id, hidden=False):
        made[key] = Message.objects.create(
            conversation=conversation,
            user=alice,
            role=role,
            is_answer=role == "assistant",
            content=key,
            request_id=request_id,
            superseded_at="2026-01-01T00:00:00Z" if hidden else None,
        )

    add("Q1", "user", "r1")
    add("A1 old", "assistant", "r1", hidden=True)
    add("A1", "assistant", "r1-regen")
    add("Q2 old", "user", "r2", hidden=True)
    add("A2 old", "assistant", "r2", hidden=True)
    add("Q2", "user", "r3")
    add("A2", "assistant", "r3")

    migration = importlib.import_module("conversations.migrations.0009_message_parent")
    migration.link_parents(django_apps, None)

    parent = {m.content: m.parent_id for m in conversation.messages.all()}
    pk = {key: m.pk for key, m in made.items()}
    assert parent == {
        "Q1": None,
        "A1 old": pk["Q1"],
        "A1": pk["Q1"],
        "Q2 old": pk["A1"],
        "A2 old": pk["Q2 old"],
        "Q2": pk["A1"],
        "A2": pk["Q2"],
    }
    thread = selectors.conversation_thread(conversation=conversation)
    assert [(m.content, m.versions and m.versions.count) for m in thread] == [
        ("Q1", None),
        ("A1", 2),
        ("Q2", 2),
        ("A2", None),
    ]


def test_the_site_api_shows_versions_and_switches_them(alice, alice_client, bob):
    first, second = two_turns(alice)
    cid = first.conversation_id
    answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    url = f"/api/conversations/{cid}/versions/"

    detail = alice_client.get(f"/api/conversations/{cid}/").json()
    assert detail["messages"][-1]["versions"]["number"] == 2
    assert detail["messages"][-1]["versions"]["count"] == 2

    switched = alice_client.post(
        url, {"message_id": second.assistant_message_id}, content_type="application/json"
    )
    assert switched.status_code == 200
    last = switched.json()["messages"][-1]
    assert (last["content"], last["versions"]["number"]) == ("A2", 1)
    assert last["parent_id"] == second.user_message_id

    for body in ({}, {"message_id": "7"}, {"message_id": 0}):
        refused = alice_client.post(url, body, content_type="application/json")
        assert refused.status_code == 400
        assert refused.json()["error"]["field"] == "message_id"
    bobs = alice_client.__class__()
    bobs.force_login(bob)
    missing = bobs.post(url, {"message_id": first.user_message_id}, content_type="application/json")
    assert missing.status_code == 404 and "error" in missing.json()
    assert shown(cid) == ["Q1", "A1", "Q2", "A2"]


def test_a_question_from_a_page_showing_another_branch_is_refused(alice):
    first, second = two_turns(alice)
    cid = first.conversation_id
    answer(regenerate(alice, cid, "req-v-r1", second.assistant_message_id), "A2 second")
    rows = Message.objects.count()

    # A tab still showing A2 (version 1) asks on: the thread shows version 2 now.
    with pytest.raises(StaleConversation):
        start(
            alice,
            "req-v-q3",
            conversation_id=cid,
            content="Q3",
            message_id=second.assistant_message_id,
        )
    assert Message.objects.count() == rows
    latest = Message.objects.filter(conversation_id=cid, role="assistant").latest("pk")
    third = start(alice, "req-v-q4", conversation_id=cid, content="Q3", message_id=latest.pk)
    assert Message.objects.get(pk=third.user_message_id).parent_id == latest.pk


def test_a_generated_titles_call_is_no_version_of_anything(alice):
    first, _ = two_turns(alice)
    cid = first.conversation_id
    call = Message.objects.create(
        conversation_id=cid,
        user=alice,
        role="assistant",
        purpose=Message.Purpose.TITLE,
        is_answer=True,
        content="Tides",
        request_id="req-v-q1-title",
        superseded_at="2026-01-01T00:00:00Z",
    )

    with pytest.raises(InvalidChatRequest):
        services.conversation_show_version(user=alice, conversation_id=cid, message_id=call.pk)
    assert shown(cid) == ["Q1", "A1", "Q2", "A2"]
    thread = selectors.conversation_thread(conversation=Conversation.objects.get(pk=cid))
    assert all(m.versions is None for m in thread)


def test_the_admin_transcript_says_which_version_each_is_and_what_it_answers(alice, make_user):
    first, _ = two_turns(alice)
    answer(regenerate(alice, first.conversation_id, "req-v-r1"), "A2 again")
    admin = make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)

    page = client.get(
        f"/admin/conversations/conversation/{first.conversation_id}/change/"
    ).content.decode()

    question = Message.objects.get(content="Q2")
    answering = f'answering <a href="#message-{question.pk}">message {question.pk}</a>'
    assert f"Version 1 of 2, {answering}" in page
    assert f"Version 2 of 2, {answering}" in page
    assert page.count("Version ") == 2  # Q1, A1 and Q2 have no other version
