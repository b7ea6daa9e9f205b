"""Multi-turn /v1 conversations as real clients send them: the whole history, every call.

The official openai SDK talks to a daphne process over real HTTP; the development LLM server
answers. A client that sends the growing history of one chat continues one saved API
conversation.
"""

import openai
import pytest

from conversations.models import Conversation, Message
from tests.conftest import openai_client
from tests.v1.test_openai_api_live import devllm_record, request_id_of

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SYSTEM = {"role": "system", "content": "You are terse."}
QUESTIONS = ["What is Python?", "And Django?", "And streaming?"]
USER_4 = {"role": "user", "content": "And tests?"}


@pytest.fixture
def sdk(site, alice, make_api_key):
    return openai_client(site, make_api_key(alice))


def ask(sdk, messages: list[dict], *, stream: bool, **extra) -> tuple[str, str]:
    """Send one call as a chat client does; return (request ID, answer text)."""
    if not stream:
        completion = sdk.chat.completions.create(model="dev/dev-chat", messages=messages, **extra)
        return request_id_of(completion.id), completion.choices[0].message.content
    chunks = list(
        sdk.chat.completions.create(
            model="dev/dev-chat",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **extra,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return request_id_of(chunks[0].id), text


def converse(sdk, *, stream: bool) -> list[tuple[str, str]]:
    """Three turns, each call carrying the whole history with the earlier answers."""
    history, turns = [SYSTEM], []
    for question in QUESTIONS:
        history.append({"role": "user", "content": question})
        request_id, answer = ask(sdk, history, stream=stream)
        history.append({"role": "assistant", "content": answer})
        turns.append((request_id, answer))
    return turns


def thread_of(user) -> list[tuple[str, str, str]]:
    (conversation,) = Conversation.objects.filter(owner=user, source=Conversation.Source.API)
    return list(conversation.messages.order_by("pk").values_list("role", "content", "request_id"))


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "not-streaming"])
def test_a_growing_history_continues_one_api_conversation(sdk, alice, devllm, stream):
    turns = converse(sdk, stream=stream)

    saved = thread_of(alice)
    assert [(role, content) for role, content, _ in saved] == [
        ("system", SYSTEM["content"]),
        ("user", QUESTIONS[0]),
        ("assistant", turns[0][1]),
        ("user", QUESTIONS[1]),
        ("assistant", turns[1][1]),
        ("user", QUESTIONS[2]),
        ("assistant", turns[2][1]),
    ]
    # Each answer carries its own call's request ID, and so does the question it answers.
    answers = Message.objects.filter(user=alice, is_answer=True).order_by("pk")
    assert [a.request_id for a in answers] == [request_id for request_id, _ in turns]
    assert len({request_id for request_id, _ in turns}) == 3
    assert all(a.status == Message.Status.COMPLETED and a.content for a in answers)
    assert [request_id for role, _, request_id in saved if role == "user"] == [
        request_id for request_id, _ in turns
    ]
    # The model saw the whole history each time.
    last_call = devllm_record(devllm, turns[2][0])
    assert len(last_call["messages"]) == 6


def test_a_prefilled_assistant_message_is_saved_as_prompt_not_as_the_answer(sdk, alice, devllm):
    messages = [
        {"role": "user", "content": "[[devllm echo]] Write a haiku"},
        {"role": "assistant", "content": "Autumn moonlight"},
    ]
    request_id, answer = ask(sdk, messages, stream=True)

    saved = Message.objects.filter(request_id=request_id).order_by("pk")
    assert [(m.role, m.is_answer, m.content) for m in saved] == [
        ("user", False, messages[0]["content"]),
        ("assistant", False, "Autumn moonlight"),
        ("assistant", True, answer),
    ]
    assert devllm_record(devllm, request_id)["messages"] == messages


def test_an_assistant_message_without_content_is_accepted(sdk, alice, devllm):
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Are you there?"},
    ]
    request_id, answer = ask(sdk, messages, stream=False)

    assert answer
    seen = devllm_record(devllm, request_id)["messages"]
    assert seen[1] == {"role": "assistant", "content": ""}
    assert [role for role, _, _ in thread_of(alice)] == ["user", "assistant", "user", "assistant"]


def test_an_edited_history_starts_a_new_conversation(sdk, alice):
    first = [{"role": "user", "content": "Tell me a fact."}]
    _, answer = ask(sdk, first, stream=False)
    edited = [*first, {"role": "assistant", "content": answer + " (edited)"}]
    ask(sdk, [*edited, {"role": "user", "content": "Another."}], stream=False)

    assert Conversation.objects.filter(owner=alice, source="api").count() == 2


def test_a_retry_after_a_failed_answer_continues_the_same_conversation(sdk, alice):
    failing = [{"role": "user", "content": "[[devllm status=500]] Hello"}]
    with pytest.raises(openai.InternalServerError):
        ask(sdk, failing, stream=False)
    # The client retries the same prompt, which joins the thread again.
    with pytest.raises(openai.InternalServerError):
        ask(sdk, failing, stream=True)

    (conversation,) = Conversation.objects.filter(owner=alice, source="api")
    statuses = list(conversation.messages.order_by("pk").values_list("role", "status"))
    assert statuses == [("user", "completed"), ("assistant", "failed"), ("assistant", "failed")]


def test_another_users_identical_history_never_joins_this_users_thread(
    site, sdk, alice, bob, make_api_key
):
    history = [{"role": "user", "content": "Shared opening line"}]
    _, answer = ask(sdk, history, stream=False)
    bobs = openai_client(site, make_api_key(bob))
    ask(
        bobs,
        [*history, {"role": "assistant", "content": answer}, {"role": "user", "content": "Hi"}],
        stream=False,
    )

    assert Conversation.objects.filter(owner=alice).count() == 1
    assert Conversation.objects.filter(owner=bob).count() == 1
    assert Conversation.objects.get(owner=alice).messages.count() == 2


def shown_and_hidden(user) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The user's one API conversation: the thread shown, and the versions it no longer shows."""
    (conversation,) = Conversation.objects.filter(owner=user, source=Conversation.Source.API)
    rows = conversation.messages.order_by("pk")
    shown = list(rows.filter(superseded_at__isnull=True).values_list("role", "content"))
    hidden = list(rows.filter(superseded_at__isnull=False).values_list("role", "content"))
    return shown, hidden


@pytest.mark.parametrize("stream", [True, False], ids=["streaming", "not-streaming"])
def test_the_same_history_sent_again_is_a_new_version_of_its_answer(sdk, alice, stream):
    turns = converse(sdk, stream=stream)
    history = [SYSTEM]
    for question, (_, answer) in zip(QUESTIONS, turns, strict=True):
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    # Regenerate the last answer: the turn-3 history again, as a client's "retry" button does.
    # (A shorter one, max_tokens being no part of the history, so that the two differ.)
    _, again = ask(sdk, history[:-1], stream=stream, max_tokens=3)
    assert again != turns[2][1]
    # Then go on from the new version.
    _, fourth = ask(
        sdk, [*history[:-1], {"role": "assistant", "content": again}, USER_4], stream=stream
    )

    shown, hidden = shown_and_hidden(alice)
    assert shown == [
        ("system", SYSTEM["content"]),
        ("user", QUESTIONS[0]),
        ("assistant", turns[0][1]),
        ("user", QUESTIONS[1]),
        ("assistant", turns[1][1]),
        ("user", QUESTIONS[2]),
        ("assistant", again),
        ("user", USER_4["content"]),
        ("assistant", fourth),
    ]
    assert hidden == [("assistant", turns[2][1])]  # kept, as a version
    first, second = Message.objects.filter(user=alice, is_answer=True).order_by("pk")[2:4]
    assert first.parent_id == second.parent_id  # two versions of one question's answer


def test_a_thread_continued_from_an_earlier_version_shows_that_branch_again(sdk, alice):
    _, river = ask(sdk, [{"role": "user", "content": "Name a river."}], stream=False)
    asked = [
        {"role": "user", "content": "Name a river."},
        {"role": "assistant", "content": river},
        {"role": "user", "content": "And a lake?"},
    ]
    _, first = ask(sdk, asked, stream=False)
    # A regenerate (shorter, so that the versions differ): the second version is shown.
    _, second = ask(sdk, asked, stream=False, max_tokens=3)
    assert second != first

    # The client goes on with the first version, as a client holding the older reply does.
    _, answer = ask(sdk, [*asked, {"role": "assistant", "content": first}, USER_4], stream=False)

    shown, hidden = shown_and_hidden(alice)
    assert shown == [
        *[(m["role"], m["content"]) for m in asked],
        ("assistant", first),
        ("user", USER_4["content"]),
        ("assistant", answer),
    ]
    assert hidden == [("assistant", second)]


def test_a_prefill_sent_back_merged_with_its_continuation_continues_the_thread(sdk, alice):
    prompt = [
        {"role": "user", "content": "[[devllm echo]] Write a haiku"},
        {"role": "assistant", "content": "Autumn moonlight - "},
    ]
    _, continuation = ask(sdk, prompt, stream=True)
    merged = {"role": "assistant", "content": prompt[1]["content"] + continuation}

    _, answer = ask(sdk, [prompt[0], merged, USER_4], stream=False)

    shown, hidden = shown_and_hidden(alice)  # one conversation, nothing copied
    assert shown == [
        ("user", prompt[0]["content"]),
        ("assistant", prompt[1]["content"]),
        ("assistant", continuation),
        ("user", USER_4["content"]),
        ("assistant", answer),
    ]
    assert hidden == []


def test_calls_that_only_share_an_opening_stay_conversations_of_their_own(sdk, alice):
    opening = [SYSTEM, {"role": "user", "content": "Summarise: the sky is blue."}]
    ask(sdk, opening, stream=False)
    ask(sdk, opening, stream=False)  # the same one-shot call again: not a regenerate
    ask(sdk, [SYSTEM, {"role": "user", "content": "Summarise: grass is green."}], stream=False)

    assert Conversation.objects.filter(owner=alice, source="api").count() == 3
