"""A turn's typed events: what the log stores comes back as the same class, and a saved
answer replays as the classes its live turn published."""

import dataclasses

import pytest

from conversations.models import Message
from conversations.turns.eventlog import LoggedEvent
from conversations.turns.events import (
    Delta,
    Done,
    Failed,
    Reasoning,
    Start,
    decode,
    ending_of,
    replay,
)
from conversations.usage import TokenUsage

EVENTS = [
    Start(
        id=1,
        request_id="req-1",
        conversation=4,
        title="Hi",
        user_message=7,
        assistant_message=8,
        model="dev/dev-chat",
        replaces=(5, 6),
    ),
    Reasoning(id=2, content="Let me think."),
    Delta(id=3, content="Hello"),
    Done(id=4, status="completed", finish_reason="stop", usage=TokenUsage(7, 2, False)),
    Failed(id=4, status="failed", message="Upstream broke.", code="x", http_status=502),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.name)
def test_an_event_comes_back_from_the_log_as_the_same_class(event):
    name, data = event.spec()
    logged = LoggedEvent(event.id, name, data, event.final)

    assert decode(logged) == event


def test_only_the_final_events_end_a_turn():
    assert [e.final for e in EVENTS] == [False, False, False, True, True]


def test_an_unknown_event_is_refused_not_guessed():
    with pytest.raises(ValueError, match="unknown"):
        decode(LoggedEvent(1, "unknown", {}))


def test_a_done_event_logged_before_estimates_reads_its_nulls_as_zero():
    logged = LoggedEvent(
        3, "done", {"status": "stopped", "usage": {"prompt_tokens": None}}, final=True
    )

    assert decode(logged).usage == TokenUsage(0, 0, reported=True)


def answer(**fields) -> Message:
    defaults = {
        "pk": 8,
        "conversation_id": 4,
        "parent_id": 7,
        "request_id": "req-1",
        "model": "dev/dev-chat",
        "role": "assistant",
        "is_answer": True,
        "finish_reason": "stop",
        "prompt_tokens": 7,
        "completion_tokens": 2,
        "usage_reported": False,
    }
    return Message(**(defaults | fields))


def test_a_saved_answer_replays_as_the_classes_its_turn_published():
    saved = answer(status="completed", reasoning="Let me think.", content="Hello")

    events = replay(saved)

    assert [type(e) for e in events] == [Start, Reasoning, Delta, Done]
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert events[0] == Start(
        id=1,
        request_id="req-1",
        conversation=4,
        user_message=7,
        assistant_message=8,
        model="dev/dev-chat",
    )
    assert (events[1].content, events[2].content) == ("Let me think.", "Hello")
    # The live turn's final event, as the runner published it, but for where it was recorded.
    live_done = dataclasses.replace(EVENTS[3], record=None)
    assert events[-1] == live_done


def test_a_failed_answer_replays_ending_in_failed():
    events = replay(answer(status="interrupted", content="", error="The server restarted."))

    assert [type(e) for e in events] == [Start, Failed]
    assert events[-1].message == "The server restarted." and events[-1].final


def test_a_stopped_answer_ends_done_with_its_status():
    ending = ending_of(answer(status="stopped", content="Par"))

    assert isinstance(ending, Done) and ending.status == "stopped"
