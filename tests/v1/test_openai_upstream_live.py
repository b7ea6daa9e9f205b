"""What /v1 clients get when the model's upstream fails or misbehaves, over real HTTP.

Failures before the first token keep their meaning in the status line, for `stream=True` as
well as `stream=False`, so the SDKs raise their own exception classes and retry or fall back
by class. Quirky upstreams (tests/quirky_upstream.py) end as a whole answer or as a failed turn
with the upstream's reason, never as an empty "completed" answer.
"""

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conversations.models import Message
from tests.conftest import openai_client
from tests.quirky_upstream import ANSWER, ANSWER_TOKENS
from tests.v1.test_openai_api_live import request_id_of
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

STREAMING = pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])


@pytest.fixture
def sdk(site, alice, make_api_key):
    return openai_client(site, make_api_key(alice))


def create(sdk, model: str, content: str = "Hello", *, stream: bool, **extra):
    """One call as an SDK user makes it; a stream is read to its end."""
    response = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], stream=stream, **extra
    )
    return list(response) if stream else response


def saved_answer(content: str = "Hello") -> Message:
    question = Message.objects.get(role="user", content=content)
    return wait_for(
        lambda: Message.objects.filter(
            request_id=question.request_id, is_answer=True, status__in=["completed", "failed"]
        ).first()
    )


@STREAMING
def test_an_upstream_429_is_a_rate_limit_error_with_its_wait(sdk, stream):
    content = "[[devllm status=429 retry_after=7]] Hello"
    with pytest.raises(openai.RateLimitError) as caught:
        create(sdk, "dev/dev-chat", content, stream=stream)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert "rate-limiting" in caught.value.message
    answer = saved_answer(content)
    assert answer.status == "failed" and "rate-limiting" in answer.error


@STREAMING
def test_an_upstream_500_is_a_bad_gateway(sdk, stream):
    content = "[[devllm status=500]] Hello"
    with pytest.raises(openai.InternalServerError) as caught:
        create(sdk, "dev/dev-chat", content, stream=stream)

    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"
    assert saved_answer(content).error.startswith("The model's endpoint failed (HTTP 500)")


@STREAMING
def test_an_overloaded_upstream_is_a_503_with_its_wait(sdk, stream):
    with pytest.raises(openai.InternalServerError) as caught:
        create(sdk, "quirks/status-503", stream=stream)

    assert caught.value.status_code == 503
    assert caught.value.response.headers["Retry-After"] == "3"
    assert "currently overloaded" in caught.value.message


@STREAMING
def test_an_unreachable_upstream_is_service_unavailable(sdk, stream):
    with pytest.raises(openai.InternalServerError) as caught:
        create(sdk, "offline/ghost", stream=stream)

    assert caught.value.status_code == 503
    assert saved_answer().error == "The model could not be reached."


@STREAMING
def test_an_upstream_400_keeps_its_reason_param_and_code(sdk, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, "quirks/bad-request", stream=stream)

    assert caught.value.status_code == 400
    assert "maximum context length is 8192 tokens" in caught.value.message
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    answer = saved_answer()
    assert answer.status == "failed" and "maximum context length" in answer.error
    assert Message.objects.filter(role="user", content="Hello").exists()


@STREAMING
def test_an_upstream_400_in_plain_text_keeps_its_reason(sdk, stream):
    with pytest.raises(openai.BadRequestError) as caught:
        create(sdk, "quirks/plain-400", stream=stream)
    assert "prompt too long for this model" in caught.value.message


def test_the_status_line_of_a_stream_waits_for_the_model(site, alice, make_api_key):
    # Read as raw HTTP: the status arrives only once the model answered, and says how.
    response = httpx.post(
        f"{site.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {make_api_key(alice)}"},
        json={
            "model": "dev/dev-chat",
            "stream": True,
            "messages": [{"role": "user", "content": "[[devllm status=429 retry_after=2]] x"}],
        },
    )
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-ratelimit-limit-requests"] == "100000"
    assert response.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("quirk", ["multiline-data", "crlf", "cr", "json-completion", "slow-ok"])
def test_odd_but_whole_streams_arrive_whole(sdk, quirk):
    chunks = create(sdk, f"quirks/{quirk}", stream=True, stream_options={"include_usage": True})

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens == 7
    answer = saved_answer()
    assert (answer.status, answer.content, answer.usage_reported) == ("completed", ANSWER, True)


def test_a_finish_reason_openai_does_not_know_is_mapped_to_one(sdk):
    chunks = create(sdk, "quirks/odd-finish", stream=True)

    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert saved_answer().finish_reason == "stop"


@STREAMING
def test_an_upstream_without_usage_gets_integer_counts_the_sdks_types_accept(sdk, quirky, stream):
    # "quirks/reject-stream-options" refuses stream_options: tried again without it, it
    # answers with no usage at all, so every count is ours.
    model, messages = "quirks/reject-stream-options", [{"role": "user", "content": "Hello"}]
    if stream:
        chunks = create(sdk, model, stream=True, stream_options={"include_usage": True})
        # The SDK builds its objects unvalidated; its types, strictly, reject a null count.
        for chunk in chunks:
            ChatCompletionChunk.model_validate(chunk.to_dict())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
        usage = chunks[-1].usage
    else:
        raw = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)
        assert raw.headers["X-Usage-Estimated"] == "true"
        completion = ChatCompletion.model_validate(raw.parse().to_dict())
        assert completion.choices[0].message.content == ANSWER
        usage = completion.usage

    answer = saved_answer()
    # The estimate sent is the one saved and charged; the record keeps that it is ours.
    assert answer.status == "completed" and not answer.usage_reported
    assert answer.completion_tokens == 5 and answer.prompt_tokens > 0
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        answer.prompt_tokens,
        5,
        answer.prompt_tokens + 5,
    )
    assert usage.model_extra == {"estimated": True}
    sent = httpx.get(f"{quirky.url}/_quirks/requests").json()["data"]
    tries = [r["body"] for r in sent if r["request_id"] == answer.request_id]
    # Refused once, asked again without it; the process remembers, so later calls ask once.
    assert ["stream_options" in body for body in tries] in ([True, False], [False])


@STREAMING
def test_usage_the_model_reported_is_passed_on_without_an_estimate_mark(sdk, stream):
    if stream:
        chunks = create(sdk, "dev/dev-chat", stream=True, stream_options={"include_usage": True})
        usage = chunks[-1].usage
    else:
        raw = sdk.chat.completions.with_raw_response.create(
            model="dev/dev-chat", messages=[{"role": "user", "content": "Hello"}]
        )
        assert "X-Usage-Estimated" not in raw.headers
        usage = raw.parse().usage

    answer = saved_answer()
    assert answer.usage_reported
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        answer.prompt_tokens,
        answer.completion_tokens,
    )
    assert usage.model_extra == {}


@pytest.mark.parametrize(
    ("quirk", "status", "reason"),
    [
        ("html", 502, "web page, not a stream: Captive Portal Login"),
        ("empty", 502, "sent an empty answer"),
        ("error-event", 502, "upstream overloaded, try later"),
    ],
)
def test_a_stream_that_is_no_answer_fails_with_the_upstreams_reason(sdk, quirk, status, reason):
    with pytest.raises(openai.APIStatusError) as caught:
        create(sdk, f"quirks/{quirk}", stream=True)

    assert caught.value.status_code == status
    assert reason in caught.value.message
    answer = saved_answer()
    assert (answer.status, answer.content) == ("failed", "")
    assert reason in answer.error


def test_a_stream_that_stops_mid_answer_is_failed_with_what_arrived(sdk):
    received = []
    with pytest.raises(openai.APIError, match="ended before its answer was complete"):
        for chunk in sdk.chat.completions.create(
            model="quirks/cut", messages=[{"role": "user", "content": "Hello"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    assert received == ANSWER_TOKENS[:3]
    answer = saved_answer()
    assert (answer.status, answer.content) == ("failed", "".join(ANSWER_TOKENS[:3]))


def test_a_prompt_as_large_as_chatsite_accepts_reaches_the_model(sdk, devllm):
    # 70 messages of 30,000 characters: 2.1 MB, under chatsite's 2.5 MB body limit and over
    # the 1 MiB that aiohttp, the development server's framework, accepts by default.
    messages = [{"role": "user", "content": "x" * 30_000} for _ in range(69)]
    messages.append({"role": "user", "content": "[[devllm tokens=3]] last"})
    completion = sdk.chat.completions.create(model="dev/dev-chat", messages=messages)

    assert completion.choices[0].finish_reason == "length"
    seen = httpx.get(f"{devllm.url}/_devllm/requests/{request_id_of(completion.id)}").json()
    assert len(seen["messages"]) == 70
