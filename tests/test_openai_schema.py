"""Validating OpenAI chat completion request bodies."""

import pytest

from conversations.exceptions import InvalidChatRequest
from conversations.openai_schema import parse_chat_completion

BASE = {"model": "dev/dev-chat", "messages": [{"role": "user", "content": "hi"}]}


def parse(**changes):
    return parse_chat_completion(BASE | changes, max_chars=100)


def test_a_full_request_keeps_what_the_model_needs():
    request = parse(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0.5,
        max_tokens=10,
        stop="END",
        seed=3,
        user="someone",
        unknown_future_field=True,
    )
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "ab"},
    ]
    assert request.stream and request.include_usage
    assert request.params == {"temperature": 0.5, "max_tokens": 10, "stop": "END", "seed": 3}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": None}, "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "x" * 101}]}, "messages[0].content"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stop": []}, "stop"),
        ({"seed": "1"}, "seed"),
        ({"response_format": "json"}, "response_format"),
        ({"n": 3}, "n"),
        ({"tool_choice": "auto"}, "tool_choice"),
    ],
)
def test_each_bad_field_is_named(changes, field):
    with pytest.raises(InvalidChatRequest) as caught:
        parse(**changes)
    assert caught.value.field == field
