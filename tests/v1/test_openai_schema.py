"""Validating OpenAI chat completion request bodies."""

import pytest

from conversations.exceptions import InvalidChatRequest
from conversations.v1.schema import parse_chat_completion

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
    # Documented fields and fields OpenAI does not know both go to the upstream as given.
    assert request.params == {
        "temperature": 0.5,
        "max_tokens": 10,
        "stop": "END",
        "seed": 3,
        "user": "someone",
        "unknown_future_field": True,
    }


def test_explicit_nulls_mean_not_given():
    request = parse(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None},
        ],
        n=None,
        stream=None,
        stop=None,
        stream_options=None,
        temperature=None,
        tools=None,
        logprobs=None,
    )
    assert request.messages[1] == {"role": "assistant", "content": ""}
    assert not request.stream and not request.include_usage
    assert request.params == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("reasoning_effort", "low"),
        ("verbosity", "low"),
        ("user", "u-1"),
        ("safety_identifier", "s-1"),
        ("prompt_cache_key", "k"),
        ("service_tier", "auto"),
        ("metadata", {"team": "blue"}),
        ("logit_bias", {"50256": -100}),
        ("store", False),
        ("logprobs", False),
        ("modalities", ["text"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("response_format", {"type": "json_object"}),
    ],
)
def test_documented_fields_chatsite_can_honour_are_passed_to_the_model(field, value):
    assert parse(**{field: value}).params == {field: value}


def test_message_fields_beyond_role_and_content_go_to_the_model_as_sent():
    request = parse(
        messages=[
            {"role": "user", "content": "Write a poem", "name": "ann"},
            {"role": "assistant", "content": "Roses", "prefix": True},
        ]
    )
    assert request.messages == [
        {"role": "user", "content": "Write a poem", "name": "ann"},
        {"role": "assistant", "content": "Roses", "prefix": True},
    ]


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
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"web_search_options": {"search_context_size": "low"}}, "web_search_options"),
        (
            {"stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
        ),
        ({"stream": True, "stream_options": {"chunk_size": 3}}, "stream_options.chunk_size"),
        ({"reasoning_effort": 3}, "reasoning_effort"),
        ({"user": 7}, "user"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"logit_bias": {"1": 101}}, "logit_bias"),
        ({"store": "yes"}, "store"),
        ({"messages": [{"role": "system", "content": None}]}, "messages[0].content"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_each_bad_field_is_named(changes, field):
    with pytest.raises(InvalidChatRequest) as caught:
        parse(**changes)
    assert caught.value.field == field
