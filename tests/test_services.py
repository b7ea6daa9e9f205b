"""Starting and saving turns."""

import dataclasses

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations import selectors, services
from conversations.exceptions import (
    ConversationNotFound,
    DuplicateRequest,
    InvalidChatRequest,
    StaleConversation,
    UnknownModel,
)
from conversations.models import Conversation, DailyUsage, Message
from conversations.records import FinishedTurn

pytestmark = pytest.mark.django_db


def start(user, request_id="req-00000001", **overrides):
    kwargs = {
        "user": user,
        "conversation_id": None,
        "model_key": "dev/dev-chat",
        "content": "What is a turn?",
        "request_id": request_id,
    } | overrides
    return services.turn_start(**kwargs)


def finished(turn, **changes) -> FinishedTurn:
    base = FinishedTurn(
        request_id=turn.request_id,
        user_id=turn.user_id,
        conversation_id=turn.conversation_id,
        user_message_id=turn.user_message_id,
        assistant_message_id=turn.assistant_message_id,
        model_key=turn.model.key,
        status=Message.Status.COMPLETED,
        content="A turn is a question and its answer.",
        reasoning="",
        finish_reason="stop",
        upstream_id="chatcmpl-1",
        prompt_tokens=5,
        completion_tokens=9,
        usage_reported=True,
        time_to_first_token_ms=12,
        duration_ms=80,
        error="",
    )
    return dataclasses.replace(base, **changes)


def test_turn_start_saves_the_user_message_and_a_streaming_answer(alice):
    turn = start(alice)

    user_message = Message.objects.get(pk=turn.user_message_id)
    answer = Message.objects.get(pk=turn.assistant_message_id)
    assert (user_message.role, user_message.content) == ("user", "What is a turn?")
    assert (answer.role, answer.status, answer.content) == ("assistant", "streaming", "")
    assert user_message.request_id == answer.request_id == "req-00000001"
    assert user_message.user == answer.user == alice
    assert turn.history == [{"role": "user", "content": "What is a turn?"}]
    assert Conversation.objects.get(pk=turn.conversation_id).title == "What is a turn?"


def test_turn_start_continues_an_existing_conversation_and_switches_its_model(alice):
    first = start(alice)
    services.save_finished_turn(finished(first))

    second = start(
        alice,
        request_id="req-00000002",
        conversation_id=first.conversation_id,
        model_key="dev/dev-reasoner",
        content="And then?",
    )

    assert second.conversation_id == first.conversation_id
    assert [m["role"] for m in second.history] == ["user", "assistant", "user"]
    assert Conversation.objects.get(pk=first.conversation_id).model == "dev/dev-reasoner"


def test_turn_start_with_a_used_request_id_raises_and_writes_nothing(alice):
    start(alice)
    with pytest.raises(DuplicateRequest):
        start(alice, content="again")
    assert Message.objects.count() == 2
    assert Conversation.objects.count() == 1


def test_another_users_request_id_neither_blocks_nor_reveals_anything(alice, bob):
    alices = start(alice)
    bobs = start(bob, content="Same ID, other user")

    assert alices.request_id == bobs.request_id
    assert Message.objects.filter(user=bob, is_answer=True).count() == 1
    assert Conversation.objects.get(pk=bobs.conversation_id).owner == bob


def test_turn_start_with_an_unknown_model_writes_nothing(alice):
    with pytest.raises(UnknownModel):
        start(alice, model_key="nowhere/nothing")
    assert Message.objects.count() == 0


def test_save_finished_turn_records_everything_about_the_answer(alice):
    turn = start(alice)

    services.save_finished_turn(finished(turn))

    answer = Message.objects.get(pk=turn.assistant_message_id)
    assert answer.status == "completed"
    assert answer.content == "A turn is a question and its answer."
    assert (answer.prompt_tokens, answer.completion_tokens, answer.usage_reported) == (5, 9, True)
    assert (answer.time_to_first_token_ms, answer.duration_ms) == (12, 80)
    assert answer.upstream_id == "chatcmpl-1"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement save")
def test_a_streaming_answer_is_saved_in_one_statement_with_its_conversation_and_ledger(alice):
    turn = services.prompt_turn_start(
        user=alice,
        model_key="dev/dev-chat",
        messages=[{"role": "user", "content": "Hello"}],
        request_id="req-one-statement",
    )
    before = Conversation.objects.get(pk=turn.conversation_id)
    DailyUsage.objects.filter(user=alice).delete()  # the day's first answer creates the row

    with CaptureQueriesContext(connection) as queries:
        assert services.save_finished_turn(finished(turn, prompt_hash=turn.prompt_hash)) is True

    assert len(queries) == 1, [q["sql"] for q in queries]
    answer = Message.objects.get(pk=turn.assistant_message_id)
    assert (answer.status, answer.content) == ("completed", "A turn is a question and its answer.")
    after = Conversation.objects.get(pk=turn.conversation_id)
    assert after.updated_at > before.updated_at
    assert answer.thread_hash  # a client can continue the thread from it
    ledger = DailyUsage.objects.get(user=alice)
    assert (ledger.tokens, ledger.answers) == (5 + 9, 1)

    second = services.prompt_turn_start(
        user=alice,
        model_key="dev/dev-chat",
        messages=[{"role": "user", "content": "Again"}],
        request_id="req-one-statement-2",
    )
    services.save_finished_turn(
        finished(second, prompt_tokens=1, completion_tokens=2, prompt_hash=second.prompt_hash)
    )
    ledger.refresh_from_db()
    assert (ledger.tokens, ledger.answers) == (14 + 3, 2)


def test_saving_a_turn_a_second_time_changes_nothing(alice):
    turn = start(alice)
    services.save_finished_turn(finished(turn))

    services.save_finished_turn(finished(turn, status="stopped", content="late and different"))

    answer = Message.objects.get(pk=turn.assistant_message_id)
    assert answer.status == "completed"
    assert answer.content == "A turn is a question and its answer."


@pytest.mark.parametrize(
    ("message", "title"),
    [
        ("Short question", "Short question"),
        ("  spread\nover   lines  ", "spread over lines"),
        ("word " * 30, ("word " * 12).strip() + "…"),
    ],
)
def test_title_from_message(message, title):
    assert services.title_from_message(message) == title


def answered(user, request_id, **overrides):
    """Start a turn and save its answer; return the started turn."""
    turn = start(user, request_id=request_id, **overrides)
    services.save_finished_turn(finished(turn))
    return turn


def test_regenerate_hides_the_last_answer_and_answers_the_same_question_again(alice):
    first = answered(alice, "req-regen-001")

    again = services.turn_regenerate(
        user=alice,
        conversation_id=first.conversation_id,
        model_key="dev/dev-chat",
        request_id="req-regen-002",
    )

    assert again.user_message_id == first.user_message_id
    assert again.replaces == (first.assistant_message_id,)
    assert again.history == [{"role": "user", "content": "What is a turn?"}]
    old = Message.objects.get(pk=first.assistant_message_id)
    assert old.superseded_at is not None and old.content  # kept as a record
    visible = selectors.conversation_messages(conversation=old.conversation)
    assert [m.pk for m in visible] == [first.user_message_id, again.assistant_message_id]


def test_edit_hides_the_last_question_and_its_answer_and_asks_the_new_text(alice):
    earlier = answered(alice, "req-edit-0001", content="First question")
    last = answered(
        alice, "req-edit-0002", conversation_id=earlier.conversation_id, content="Typo'd"
    )

    edited = services.turn_edit(
        user=alice,
        conversation_id=earlier.conversation_id,
        model_key="dev/dev-chat",
        content="Fixed question",
        request_id="req-edit-0003",
    )

    assert set(edited.replaces) == {last.user_message_id, last.assistant_message_id}
    assert [m["content"] for m in edited.history] == [
        "First question",
        "A turn is a question and its answer.",
        "Fixed question",
    ]
    assert Message.objects.get(pk=edited.user_message_id).content == "Fixed question"
    assert Message.objects.filter(superseded_at__isnull=False).count() == 2


def test_regenerate_and_edit_need_a_question_and_the_users_own_conversation(alice, bob):
    empty = Conversation.objects.create(owner=alice, title="empty", model="dev/dev-chat")
    common = {"model_key": "dev/dev-chat", "request_id": "req-nothing-1"}
    with pytest.raises(InvalidChatRequest, match="no message"):
        services.turn_regenerate(user=alice, conversation_id=empty.pk, **common)
    with pytest.raises(ConversationNotFound):
        services.turn_edit(user=bob, conversation_id=empty.pk, content="x", **common)
    assert Message.objects.count() == 0


def test_regenerate_or_edit_of_a_message_no_longer_last_is_refused(alice):
    first = start(alice)
    services.save_finished_turn(finished(first))
    again = services.turn_regenerate(
        user=alice,
        conversation_id=first.conversation_id,
        model_key="dev/dev-chat",
        request_id="req-regen-0001",
        message_id=first.assistant_message_id,
    )
    services.save_finished_turn(finished(again))
    rows = Message.objects.count()

    # A tab that still shows the first answer acts on it: refused, nothing written.
    with pytest.raises(StaleConversation):
        services.turn_regenerate(
            user=alice,
            conversation_id=first.conversation_id,
            model_key="dev/dev-chat",
            request_id="req-regen-0002",
            message_id=first.assistant_message_id,
        )
    with pytest.raises(StaleConversation):
        services.turn_edit(
            user=alice,
            conversation_id=first.conversation_id,
            model_key="dev/dev-chat",
            content="Edited",
            request_id="req-edit-0001",
            message_id=again.assistant_message_id,  # an answer, not the last question
        )
    assert Message.objects.count() == rows
    assert Message.objects.get(pk=again.assistant_message_id).superseded_at is None


def ask_api(user, n: int, content: str, status: str = Message.Status.COMPLETED):
    turn = services.prompt_turn_start(
        user=user,
        model_key="dev/dev-chat",
        messages=[{"role": "user", "content": content}],
        request_id=f"req-api-{n:04d}",
    )
    services.save_finished_turn(finished(turn, status=status, prompt_hash=turn.prompt_hash))
    return turn


def test_the_same_question_sent_again_and_again_costs_the_same_each_time(alice):
    """A batch of API calls asking one question: each is a conversation of its own, and
    finding what it continues takes the same queries however many came before."""
    ask_api(alice, 0, "Same question")
    with CaptureQueriesContext(connection) as second:
        ask_api(alice, 1, "Same question")
    for n in range(2, 40):
        ask_api(alice, n, "Same question")
    with CaptureQueriesContext(connection) as fortieth:
        turn = ask_api(alice, 40, "Same question")

    assert len(fortieth) == len(second)
    assert Conversation.objects.filter(owner=alice).count() == 41
    assert Message.objects.filter(conversation_id=turn.conversation_id).count() == 2


def test_a_question_whose_answers_all_failed_is_retried_in_its_conversation(alice):
    failed = ask_api(alice, 0, "Flaky question", status=Message.Status.FAILED)
    stopped = ask_api(alice, 1, "Flaky question", status=Message.Status.STOPPED)
    answered = ask_api(alice, 2, "Flaky question")
    fresh = ask_api(alice, 3, "Flaky question")

    assert stopped.conversation_id == answered.conversation_id == failed.conversation_id
    # Once answered, the same question again is a call of its own.
    assert fresh.conversation_id != failed.conversation_id
