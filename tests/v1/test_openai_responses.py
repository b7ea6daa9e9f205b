"""The Responses API's request parsing and event mapping, without a server: what the live
tests (test_openai_responses_live.py) cannot reach cheaply, every case of."""

import dataclasses
import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from conversations.exceptions import InvalidChatRequest
from conversations.models import Message
from conversations.turns.events import Delta, Done, Failed, Reasoning, Start, TurnEvent, replay
from conversations.usage import TokenUsage
from conversations.v1.responses_events import ResponseEventEncoder, ResponseMeta, row_response
from conversations.v1.responses_schema import parse_response_request, parse_retrieve_query

META = ResponseMeta(request_id="req-unit-0001", model="dev/dev-chat", created_at=1, echo={})
USAGE = TokenUsage(7, 3, reported=True)


def parse(**body):
    return parse_response_request({"model": "dev/dev-chat", **body}, max_chars=100, max_messages=3)


def refused_param(**body) -> str:
    with pytest.raises(InvalidChatRequest) as refused:
        parse(**body)
    return refused.value.field


# --- requests -----------------------------------------------------------------------------


def test_a_string_input_is_one_user_message_after_the_instructions():
    request = parse(input="Hi", instructions="Be terse.")

    assert request.messages([]) == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
    ]


def test_message_items_become_chat_messages_whatever_their_parts():
    request = parse(
        input=[
            {"type": "message", "role": "developer", "content": "Rules."},
            {"role": "user", "content": [{"type": "input_text", "text": "a"}]},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "b", "annotations": []}],
            },
        ]
    )

    assert request.input == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
    ]


def test_instructions_follow_a_previous_thread_unless_it_ends_under_them():
    thread = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]

    same = parse(input="More", instructions="Be terse.").messages(thread)
    other = parse(input="More", instructions="Be formal.").messages(thread)

    assert same == [*thread, {"role": "user", "content": "More"}]
    assert other == [
        *thread,
        {"role": "system", "content": "Be formal."},
        {"role": "user", "content": "More"},
    ]


def test_parameters_go_to_the_model_in_chat_completions_terms():
    request = parse(
        input="Hi", max_output_tokens=5, temperature=0.2, top_p=0.5, user="u1", store=False
    )

    assert request.params == {"max_tokens": 5, "temperature": 0.2, "top_p": 0.5, "user": "u1"}
    assert request.echo["max_output_tokens"] == 5 and request.echo["store"] is False


def test_explicit_nulls_mean_not_given():
    request = parse(
        input="Hi",
        tools=None,
        reasoning=None,
        instructions=None,
        temperature=None,
        stream=None,
        background=None,
        something_new=None,
    )

    assert request.params == {} and not request.stream and not request.background
    assert request.messages([]) == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", "b", "c", "d"]}, "input"),
        ({"input": "x" * 101}, "input"),
        ({"input": "nul \x00"}, "input"),
        ({"input": "Hi", "tools": [{"type": "function", "name": "f"}]}, "tools"),
        ({"input": "Hi", "tool_choice": "auto"}, "tool_choice"),
        ({"input": "Hi", "reasoning": {"effort": "low"}}, "reasoning"),
        ({"input": "Hi", "include": ["reasoning.encrypted_content"]}, "include"),
        ({"input": "Hi", "truncation": "auto"}, "truncation"),
        ({"input": "Hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"input": "Hi", "conversation": "conv_1"}, "conversation"),
        ({"input": "Hi", "frobnicate": 1}, "frobnicate"),
        ({"input": "Hi", "temperature": 3}, "temperature"),
        ({"input": "Hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "Hi", "stream": "yes"}, "stream"),
        ({"input": "Hi", "instructions": ["a"]}, "instructions"),
        ({"input": "Hi", "metadata": {"k": 1}}, "metadata"),
        ({"input": "Hi", "text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"input": "Hi", "stream_options": {"include_obfuscation": False}}, "stream_options"),
        (
            {"input": "Hi", "stream": True, "stream_options": {"include_obfuscation": True}},
            "stream_options.include_obfuscation",
        ),
        ({"input": [{"type": "function_call_output", "output": "1"}]}, "input[0].type"),
        ({"input": [{"role": "tool", "content": "1"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
        ),
    ],
)
def test_bad_or_unsupported_fields_are_refused_naming_them(body, param):
    assert refused_param(**body) == param


def test_a_retrieve_query_says_whether_to_stream_and_after_which_event():
    assert parse_retrieve_query({}) == (False, -1)
    assert parse_retrieve_query({"stream": "true", "starting_after": "12"}) == (True, 12)
    for query, param in (
        ({"starting_after": "-1"}, "starting_after"),
        ({"stream": "maybe"}, "stream"),
        ({"include_obfuscation": "true"}, "include_obfuscation"),
    ):
        with pytest.raises(InvalidChatRequest) as refused:
            parse_retrieve_query(query)
        assert refused.value.field == param


# --- events -------------------------------------------------------------------------------


def turn_log(*deltas: str, final: Done | Failed | None = None) -> list[TurnEvent]:
    events: list[TurnEvent] = [Start(id=1, request_id="r"), Reasoning(id=2, content="hmm")]
    events += [Delta(id=i, content=d) for i, d in enumerate(deltas, start=3)]
    final = final or Done(status="completed", finish_reason="stop")
    if isinstance(final, Done):
        final = dataclasses.replace(final, usage=USAGE)
    return [*events, dataclasses.replace(final, id=len(events) + 1)]


def typed_events(wire: bytes) -> list[dict]:
    """Parse the wire format, checking each event against the SDK's own types."""
    adapter, events = TypeAdapter(ResponseStreamEvent), []
    for block in wire.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            event = json.loads(data.removeprefix("data: "))
            assert name == f"event: {event['type']}"
            adapter.validate_python(event)
            events.append(event)
    return events


def test_a_turn_maps_to_the_typed_events_the_sdk_parses_numbered_from_zero():
    events = typed_events(ResponseEventEncoder(META).encode(turn_log("Hel", "lo")))

    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(10))
    completed = Response.model_validate(events[-1]["response"])
    assert completed.output_text == "Hello" and completed.id == "resp_req-unit-0001"
    assert completed.usage.total_tokens == 10


def test_sequence_numbers_are_a_pure_function_of_the_log_however_it_is_read():
    log = turn_log("a", "b", "c", "d")
    whole = typed_events(ResponseEventEncoder(META).encode(log))

    for after in range(-1, len(whole)):
        encoder = ResponseEventEncoder(META, starting_after=after)
        # Read in batches of one, as a reader following a live turn may.
        resumed = typed_events(b"".join(encoder.encode([event]) for event in log))
        assert resumed == whole[after + 1 :]


@pytest.mark.parametrize(
    ("final", "terminal", "status", "reason"),
    [
        (
            Done(status="completed", finish_reason="length"),
            "response.incomplete",
            "incomplete",
            "max_output_tokens",
        ),
        (
            Done(status="stopped", finish_reason=""),
            "response.incomplete",
            "cancelled",
            None,
        ),
        (
            Failed(status="failed", message="Upstream broke."),
            "response.failed",
            "failed",
            None,
        ),
        (
            Failed(status="interrupted", message="Restarting."),
            "response.failed",
            "failed",
            None,
        ),
    ],
    ids=["cut by max_output_tokens", "stopped", "failed", "interrupted"],
)
def test_an_answer_that_did_not_complete_ends_as_the_responses_api_says(
    final, terminal, status, reason
):
    events = typed_events(ResponseEventEncoder(META).encode(turn_log("part", final=final)))

    response = Response.model_validate(events[-1]["response"])
    assert events[-1]["type"] == terminal
    assert response.status == status and response.output_text == "part"
    assert events[-2]["item"]["status"] == "incomplete"
    assert (response.incomplete_details and response.incomplete_details.reason) == reason
    if status == "failed":
        assert response.error.code == "server_error"
        assert response.error.message == final.message
    else:
        assert response.error is None


def saved(**fields) -> Message:
    defaults = {"request_id": "req-unit-0001", "role": "assistant", "is_answer": True}
    return Message(**defaults, **fields)


def test_a_saved_answer_reads_back_as_its_stream_ended():
    completed = saved(
        status="completed",
        content="Hello",
        finish_reason="stop",
        prompt_tokens=7,
        completion_tokens=3,
        usage_reported=True,
    )
    replayed = typed_events(ResponseEventEncoder(META).encode(replay(completed)))
    live = typed_events(ResponseEventEncoder(META).encode(turn_log("Hello")))

    assert replayed == live  # one delta either way here; a longer answer replays in one
    assert row_response(META, completed) == live[-1]["response"]


def test_a_saved_answer_says_in_progress_cancelled_or_failed():
    streaming = row_response(META, saved(status="streaming", content="So far"))
    stopped = row_response(META, saved(status="stopped", content="Part", completion_tokens=1))
    failed = row_response(META, saved(status="failed", content="", error="Upstream broke."))
    unreported = row_response(
        META, saved(status="completed", content="x", prompt_tokens=4, completion_tokens=1)
    )

    assert streaming["status"] == "in_progress" and streaming["usage"] is None
    assert streaming["output"][0]["content"][0]["text"] == "So far"
    assert stopped["status"] == "cancelled"
    assert failed["status"] == "failed" and failed["error"]["message"] == "Upstream broke."
    # A prompt count the model did not report is our estimate: an integer, as the SDKs'
    # types require, and marked as ours.
    assert unreported["usage"]["input_tokens"] == 4
    assert unreported["usage"]["total_tokens"] == 5 and unreported["usage"]["estimated"] is True
