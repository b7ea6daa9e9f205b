"""OpenAI's Responses API through the official openai SDK, over real HTTP to daphne.

The development LLM server answers (its `echo` directive makes answers checkable); two daphne
processes share one database and one Redis where a response is resumed or cancelled from the
process that does not run it. Every response is a turn saved like any other.
"""

import httpx
import openai
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from conversations.models import Conversation, Message
from tests.conftest import openai_client
from tests.servers import devllm_record, start_site
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MODEL = "dev/dev-chat"
DELTA = "response.output_text.delta"


@pytest.fixture
def a_and_b(site_pair):
    return site_pair


@pytest.fixture
def key(alice, make_api_key) -> str:
    return make_api_key(alice)


@pytest.fixture
def sdk(site, key):
    return openai_client(site, key)


def request_id_of(response_id: str) -> str:
    assert response_id.startswith("resp_")
    return response_id.removeprefix("resp_")


def answer_to(response_id: str) -> Message:
    return Message.objects.get(request_id=request_id_of(response_id), is_answer=True)


def echo(words: int, *, delay_ms: int = 0) -> tuple[str, str]:
    """A prompt the development server answers with its own words, slowly; and that answer."""
    text = " ".join(f"word{i}" for i in range(words))
    return f"[[devllm echo delay_ms={delay_ms}]] {text}", text


def model_saw(devllm, request_id: str) -> dict | None:
    """The development server's record of a request, once it has one."""
    response = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}")
    return response.json() if response.status_code == 200 else None


def deltas(events) -> str:
    return "".join(e.delta for e in events if e.type == DELTA)


# --- streaming ----------------------------------------------------------------------------


def test_a_streamed_response_arrives_as_typed_events_in_order_while_the_model_writes(sdk, devllm):
    # Four seconds of writing: time enough for a client on a busy machine to see the first
    # words while the model still writes (a second was not, under the parallel suite).
    prompt, expected = echo(40, delay_ms=100)
    events, model_busy_at_first_delta = [], None

    for event in sdk.responses.create(model=MODEL, input=prompt, stream=True):
        events.append(event)
        if event.type == DELTA and model_busy_at_first_delta is None:
            record = devllm_record(devllm, request_id_of(events[0].response.id))
            model_busy_at_first_delta = not record["finished"]

    assert model_busy_at_first_delta, "the text came only once the model had finished"
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(types[4:-4]) == {DELTA} and len(types[4:-4]) > 1
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.status == "completed" and completed.model == MODEL
    assert deltas(events) == events[-4].text == completed.output_text == expected
    assert completed.usage.output_tokens > 0
    answer = answer_to(completed.id)
    assert answer.status == "completed" and answer.content == expected
    assert answer.conversation.source == Conversation.Source.API


def test_a_stream_the_client_drops_stops_the_model_unless_it_is_in_the_background(sdk, devllm):
    prompt, _ = echo(60, delay_ms=50)
    stream = sdk.responses.create(model=MODEL, input=prompt, stream=True)
    events = []
    for event in stream:
        events.append(event)
        if event.type == DELTA:
            break
    stream.close()

    request_id = request_id_of(events[0].response.id)
    wait_for(lambda: devllm_record(devllm, request_id)["client_disconnected"], timeout=10)
    answer = wait_for(lambda: Message.objects.filter(request_id=request_id, status="stopped"))
    assert answer[0].content and not devllm_record(devllm, request_id)["finished"]


def test_a_failure_mid_answer_ends_the_stream_with_response_failed(sdk):
    events = list(
        sdk.responses.create(model=MODEL, input="[[devllm error_after=3]] Hello", stream=True)
    )

    assert events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "server_error"
    assert failed.error.message and failed.output_text == deltas(events) != ""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    answer = answer_to(failed.id)
    assert answer.status == "failed" and answer.content == failed.output_text


def test_a_failure_before_the_first_token_is_the_status_that_says_why(sdk):
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model=MODEL, input="[[devllm status=429 retry_after=7]] Hi")
    with pytest.raises(openai.InternalServerError) as failed:
        sdk.responses.create(model=MODEL, input="[[devllm status=500]] Hi", stream=True)
    assert failed.value.status_code == 502


def test_a_response_cancelled_while_it_streams_ends_in_events_the_sdks_types_accept(sdk):
    prompt, _ = echo(200, delay_ms=30)
    events = []
    for event in sdk.responses.create(model=MODEL, input=prompt, stream=True):
        # The SDK builds its events unvalidated; its union type, strictly, must accept each.
        TypeAdapter(ResponseStreamEvent).validate_python(event.to_dict())
        events.append(event)
        if [e.type for e in events].count(DELTA) == 3:
            assert sdk.responses.cancel(events[0].response.id).status == "cancelled"

    final = events[-1]
    assert final.type == "response.incomplete" and final.response.status == "cancelled"
    answer = answer_to(final.response.id)
    assert answer.status == "stopped" and not answer.usage_reported
    usage = final.response.usage  # the model was cut off before it could count: ours
    assert (usage.input_tokens, usage.output_tokens) == (
        answer.prompt_tokens,
        answer.completion_tokens,
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.model_extra == {"estimated": True}


# --- background, resume and cancel across processes -----------------------------------------


def test_a_dropped_background_stream_resumes_on_another_process_without_gap_or_repeat(
    a_and_b, key, devllm
):
    a, b = a_and_b
    prompt, expected = echo(30, delay_ms=60)
    stream = openai_client(a, key).responses.create(
        model=MODEL, input=prompt, stream=True, background=True
    )
    first = []
    for event in stream:
        first.append(event)
        if sum(e.type == DELTA for e in first) == 3:
            break
    stream.close()  # the client goes away; the background response does not
    response_id, last_seen = first[0].response.id, first[-1].sequence_number
    assert answer_to(response_id).status == "streaming"

    rest = list(
        openai_client(b, key).responses.retrieve(response_id, stream=True, starting_after=last_seen)
    )

    numbers = [e.sequence_number for e in first + rest]
    assert numbers == list(range(len(numbers))), "a gap or a repeated event"
    assert rest[0].sequence_number == last_seen + 1
    assert rest[-1].type == "response.completed"
    assert deltas(first + rest) == rest[-1].response.output_text == expected
    answer = answer_to(response_id)
    assert answer.status == "completed" and answer.content == expected
    assert not devllm_record(devllm, request_id_of(response_id))["client_disconnected"]


def test_a_background_response_is_answered_with_nobody_reading_and_can_be_retrieved(a_and_b, key):
    a, b = a_and_b
    prompt, expected = echo(8, delay_ms=30)
    created = openai_client(a, key).responses.create(
        model=MODEL, input=prompt, background=True, metadata={"job": "nightly"}
    )

    assert created.status == "queued" and created.background and created.output == []
    on_b = openai_client(b, key)

    def finished():
        retrieved = on_b.responses.retrieve(created.id)
        return retrieved.status not in ("queued", "in_progress") and retrieved

    done = wait_for(finished, timeout=10)
    assert done.status == "completed"
    assert done.output_text == expected and done.background is True
    assert done.metadata == {"job": "nightly"} and done.created_at == created.created_at


def test_cancelling_a_running_background_response_from_another_process_stops_the_model(
    a_and_b, key, devllm
):
    a, b = a_and_b
    prompt, _ = echo(200, delay_ms=50)
    created = openai_client(a, key).responses.create(model=MODEL, input=prompt, background=True)
    request_id = request_id_of(created.id)
    wait_for(lambda: (model_saw(devllm, request_id) or {}).get("tokens_sent", 0) >= 3, timeout=10)

    cancelled = openai_client(b, key).responses.cancel(created.id)

    assert cancelled.status == "cancelled" and cancelled.id == created.id
    wait_for(lambda: devllm_record(devllm, request_id)["client_disconnected"], timeout=10)
    record = devllm_record(devllm, request_id)
    assert not record["finished"]
    answer = answer_to(created.id)
    assert answer.status == "stopped" and answer.content
    assert cancelled.output_text == answer.content
    retrieved = openai_client(a, key).responses.retrieve(created.id)
    assert retrieved.status == "cancelled"
    # Cancelling again changes nothing.
    assert openai_client(b, key).responses.cancel(created.id).status == "cancelled"


def test_a_finished_response_whose_events_expired_is_replayed_from_its_saved_answer(
    site_env, server_logs, key
):
    site = start_site(server_logs, {**site_env, "TURN_LOG_TTL_SECONDS": "1"})
    try:
        sdk = openai_client(site, key)
        prompt, expected = echo(6)
        created = sdk.responses.create(model=MODEL, input=prompt)
        assert created.status == "completed"

        def replayed():
            events = list(sdk.responses.retrieve(created.id, stream=True))
            return sum(e.type == DELTA for e in events) == 1 and events

        events = wait_for(replayed, timeout=10, interval=0.3)
        tail = list(sdk.responses.retrieve(created.id, stream=True, starting_after=4))
    finally:
        site.stop()

    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert deltas(events) == events[-1].response.output_text == expected
    assert [e.sequence_number for e in tail] == [e.sequence_number for e in events[5:]]


# --- conversations ------------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation_the_model_sees_whole(sdk, devllm):
    first = sdk.responses.create(
        model=MODEL, input="[[devllm echo]] The river is long.", instructions="Be terse."
    )
    second = sdk.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "[[devllm echo]] Sea"}]}
        ],
        instructions="Be terse.",
        previous_response_id=first.id,
    )
    third = sdk.responses.create(
        model=MODEL,
        input="[[devllm echo]] Lake",
        instructions="Be formal.",
        previous_response_id=second.id,
    )

    assert second.output_text == "Sea" and second.previous_response_id == first.id
    thread = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "[[devllm echo]] The river is long."},
        {"role": "assistant", "content": "The river is long."},
        {"role": "user", "content": "[[devllm echo]] Sea"},
        {"role": "assistant", "content": "Sea"},
        # New instructions follow the thread: the earlier ones are its history.
        {"role": "system", "content": "Be formal."},
        {"role": "user", "content": "[[devllm echo]] Lake"},
    ]
    assert devllm_record(devllm, request_id_of(second.id))["messages"] == thread[:4]
    assert devllm_record(devllm, request_id_of(third.id))["messages"] == thread
    answers = [answer_to(r.id) for r in (first, second, third)]
    assert len({a.conversation_id for a in answers}) == 1
    saved = answers[0].conversation.messages.order_by("pk").values_list("role", "content")
    answer = {"role": "assistant", "content": "Lake"}
    assert [{"role": r, "content": c} for r, c in saved] == [*thread, answer]


def test_only_a_completed_response_of_ones_own_can_be_continued(sdk, site, bob, make_api_key):
    mine = sdk.responses.create(model=MODEL, input="[[devllm echo]] mine")
    with pytest.raises(openai.InternalServerError):
        sdk.responses.create(
            model=MODEL,
            input="[[devllm status=500]] Hi",
            extra_headers={"X-Request-ID": "failed-response-0001"},
        )
    bobs = openai_client(site, make_api_key(bob))

    with pytest.raises(openai.NotFoundError) as not_found:
        bobs.responses.create(model=MODEL, input="Hi", previous_response_id=mine.id)
    with pytest.raises(openai.BadRequestError) as not_completed:
        sdk.responses.create(
            model=MODEL, input="Hi", previous_response_id="resp_failed-response-0001"
        )

    assert not_found.value.body["param"] == "previous_response_id"
    assert not_completed.value.body["param"] == "previous_response_id"


# --- the non-streaming Response, and what is refused ---------------------------------------


def test_a_response_without_stream_is_parsed_by_the_sdk_and_matches_what_is_saved(sdk, devllm):
    response = sdk.responses.create(
        model=MODEL,
        input="[[devllm echo]] exact words, naïve café ✓",
        instructions="Be terse.",
        temperature=0.3,
        metadata={"ticket": "42"},
    )

    assert isinstance(response, openai.types.responses.Response)
    assert response.status == "completed" and response.output_text == "exact words, naïve café ✓"
    assert response.output[0].role == "assistant" and response.output[0].status == "completed"
    usage = response.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens > 0
    assert response.instructions == "Be terse." and response.metadata == {"ticket": "42"}
    answer = answer_to(response.id)
    assert answer.content == response.output_text and answer.status == "completed"
    assert devllm_record(devllm, answer.request_id)["temperature"] == 0.3
    retrieved = sdk.responses.retrieve(response.id)
    assert retrieved.output_text == response.output_text and retrieved.status == "completed"
    assert retrieved.instructions == "Be terse." and retrieved.usage == usage


def test_max_output_tokens_cuts_the_answer_and_the_response_is_incomplete(sdk, devllm):
    response = sdk.responses.create(model=MODEL, input="Tell me a story.", max_output_tokens=5)

    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5
    assert devllm_record(devllm, request_id_of(response.id))["max_tokens"] == 5

    # An incomplete response can be continued, as on OpenAI ("go on"), in its conversation.
    more = sdk.responses.create(model=MODEL, input="Go on.", previous_response_id=response.id)
    assert more.status == "completed" and more.previous_response_id == response.id
    assert answer_to(more.id).conversation_id == answer_to(response.id).conversation_id


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools"),
        ({"reasoning": {"effort": "low"}}, "reasoning"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
        (
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "https://example.com/a.png"},
                        ],
                    }
                ]
            },
            "input[0].content[1]",
        ),
    ],
    ids=["tools", "reasoning", "unknown field", "image part"],
)
def test_what_cannot_be_relayed_is_refused_naming_the_field(sdk, alice, fields, param):
    request = {"model": MODEL, "input": "Hi", **fields}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(**request)

    assert refused.value.body["param"] == param
    assert not Message.objects.filter(user=alice).exists()


def test_another_users_response_is_not_found(sdk, site, bob, make_api_key):
    mine = sdk.responses.create(model=MODEL, input="[[devllm echo]] mine")
    bobs = openai_client(site, make_api_key(bob))

    for attempt in (
        lambda: bobs.responses.retrieve(mine.id),
        lambda: bobs.responses.retrieve(mine.id, stream=True),
        lambda: bobs.responses.cancel(mine.id),
        lambda: sdk.responses.retrieve("resp_no-such-response"),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    assert sdk.responses.retrieve(mine.id).output_text == "mine"
