"""The one usage rule, read the same way live, after a reload, in exports and on /v1."""

from conversations.models import Message
from conversations.usage import USAGE_ESTIMATED_HEADER, TokenUsage


def test_the_models_own_counts_carry_no_estimate_mark():
    usage = TokenUsage(7, 3, reported=True)

    assert usage.as_json() == {"prompt_tokens": 7, "completion_tokens": 3, "reported": True}
    assert usage.as_chat_completion() == {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
    }
    assert usage.as_response()["total_tokens"] == 10
    assert "estimated" not in usage.as_response()
    assert usage.headers() == {}


def test_our_estimate_says_so_in_every_openai_shape_and_header():
    usage = TokenUsage(4, 1, reported=False)

    assert usage.as_json()["reported"] is False
    assert usage.as_chat_completion()["estimated"] is True
    assert usage.as_response()["estimated"] is True
    assert (usage.as_response()["input_tokens"], usage.as_response()["output_tokens"]) == (4, 1)
    assert usage.headers() == {USAGE_ESTIMATED_HEADER: "true"}


def test_a_saved_answer_reads_as_its_live_usage():
    live = TokenUsage(7, 3, reported=False)
    row = Message(role="assistant", prompt_tokens=7, completion_tokens=3, usage_reported=False)

    assert TokenUsage.of_message(row) == live
    assert TokenUsage.from_json(live.as_json()) == live


def test_a_question_has_no_usage_and_an_uncounted_answer_counts_zero():
    question = Message(role="user", prompt_tokens=None, completion_tokens=None)
    placeholder = Message(role="assistant", prompt_tokens=None, completion_tokens=None)

    assert TokenUsage.of_message(question) is None
    assert TokenUsage.json_of(question) is None
    assert TokenUsage.of_message(placeholder) == TokenUsage(0, 0, reported=False)
