"""The chat stream through a real daphne process and a real development LLM server."""

import pytest

from conversations.models import Conversation, Message
from tests.conftest import log_in
from tests.servers import devllm_record
from tests.sse_client import post_stream
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_answer_arrives_in_several_chunks_spread_over_time(site, alice):
    client = log_in(site.url, "alice")

    stream = post_stream(client, {"message": "Tell me about streaming.", "model": "dev/dev-chat"})

    assert stream.status_code == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    # The first event is the start event, before any token.
    assert stream.events[0].name == "start"
    deltas = stream.named("delta")
    assert len(deltas) > 20
    reads_with_deltas = [at for at, chunk in stream.reads if b"event: delta" in chunk]
    assert len(reads_with_deltas) >= 10, "the answer came in a burst, not as a stream"
    # The development server waits 20 ms a token; a burst would arrive within a few ms.
    assert deltas[-1].at - deltas[0].at > 0.3
    assert stream.events[-1].name == "done"


def test_completed_stream_saves_both_messages_with_request_id_usage_and_timings(site, alice):
    client = log_in(site.url, "alice")
    request_id = "test-request-0001"

    stream = post_stream(
        client,
        {"message": "Explain lists and code, please.", "model": "dev/dev-chat"},
        headers={"X-Request-ID": request_id},
    )

    assert stream.headers["x-request-id"] == request_id
    start = stream.named("start")[0].data
    assert start["request_id"] == request_id
    done = stream.named("done")[0].data
    assert done["status"] == "completed"
    assert done["usage"]["reported"] is True
    user_message = Message.objects.get(request_id=request_id, role="user")
    answer = Message.objects.get(request_id=request_id, role="assistant")
    assert user_message.content == "Explain lists and code, please."
    assert user_message.user_id == answer.user_id == alice.pk
    assert user_message.conversation_id == answer.conversation_id == start["conversation"]
    assert answer.pk == start["assistant_message"]
    assert answer.status == Message.Status.COMPLETED
    assert answer.finish_reason == "stop"
    assert answer.content == stream.content
    assert answer.content.strip()
    assert answer.completion_tokens == done["usage"]["completion_tokens"] > 0
    assert answer.prompt_tokens and answer.prompt_tokens > 0
    assert answer.usage_reported
    assert answer.upstream_id.startswith("chatcmpl-")
    assert answer.time_to_first_token_ms is not None
    assert answer.duration_ms >= answer.time_to_first_token_ms
    assert Conversation.objects.get(pk=start["conversation"]).owner == alice


def test_request_id_that_is_not_sane_is_replaced(site, alice):
    client = log_in(site.url, "alice")

    stream = post_stream(
        client, {"message": "[[devllm tokens=2]] hi"}, headers={"X-Request-ID": "bad id\x7f"}
    )

    generated = stream.headers["x-request-id"]
    assert generated != "bad id\x7f" and len(generated) == 32
    assert Message.objects.filter(request_id=generated).count() == 2


def test_follow_up_sends_the_conversation_history_to_the_model(site, devllm, alice):
    client = log_in(site.url, "alice")
    first = post_stream(client, {"message": "[[devllm tokens=3]] first question"})
    conversation = first.named("start")[0].data["conversation"]

    post_stream(
        client,
        {"message": "second question", "conversation": conversation},
        headers={"X-Request-ID": "follow-up-0001"},
    )

    sent = devllm_record(devllm, "follow-up-0001")["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "[[devllm tokens=3]] first question"
    assert sent[1]["content"] == first.content
    assert sent[2]["content"] == "second question"


def test_stop_saves_the_partial_answer_as_stopped_and_stops_the_model(site, devllm, alice):
    client = log_in(site.url, "alice")
    request_id = "stop-0000000001"

    stream = post_stream(
        client,
        {"message": "[[devllm delay_ms=50]] a long answer please"},
        headers={"X-Request-ID": request_id},
        stop_after=5,
    )

    # The Stop request answers once the answer is saved; the stream ends with `done`.
    assert stream.events[-1].name == "done"
    assert stream.events[-1].data["status"] == "stopped"
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert answer.status == Message.Status.STOPPED
    assert answer.content == stream.content != ""
    record = wait_for(lambda: devllm_record(devllm, request_id)["client_disconnected"] and True)
    assert record
    assert devllm_record(devllm, request_id)["finished"] is False
    assert Message.objects.filter(request_id=request_id, role="user").exists()


def test_a_client_that_leaves_the_chat_page_is_not_a_stop(site, devllm, alice):
    """A reload or a closed tab: the answer is finished and saved whole (CHAT_DISCONNECT_POLICY
    defaults to continue), and the model sees its stream end normally."""
    client = log_in(site.url, "alice")
    request_id = "hang-up-0000001"

    stream = post_stream(
        client,
        {"message": "[[devllm tokens=40 delay_ms=20]] a long answer please"},
        headers={"X-Request-ID": request_id},
        hang_up_after=5,
    )

    answer = wait_for(
        lambda: Message.objects.filter(
            request_id=request_id, is_answer=True, status=Message.Status.COMPLETED
        ).first(),
        timeout=10,
    )
    assert answer.content.startswith(stream.content)
    assert answer.completion_tokens == 40
    record = devllm_record(devllm, request_id)
    assert record["finished"] is True
    assert record["client_disconnected"] is False


@pytest.mark.parametrize(
    ("directive", "expected"),
    [
        ("error_after=3", "failed while answering"),
        # A slower model: the reset comes 0.2 s after the third token, read by then even on
        # a loaded machine.
        ("drop_after=3 delay_ms=200", "broke off"),
        ("malformed_after=3", "malformed"),
    ],
)
def test_upstream_failure_mid_stream_sends_error_and_saves_partial_answer_as_failed(
    site, alice, directive, expected
):
    client = log_in(site.url, "alice")
    request_id = f"midstream-{directive.split('=')[0]}"

    stream = post_stream(
        client, {"message": f"[[devllm {directive}]] hello"}, headers={"X-Request-ID": request_id}
    )

    assert len(stream.named("delta")) == 3
    error = stream.named("error")[0].data
    assert expected in error["message"]
    assert stream.events[-1].name == "error"
    answer = Message.objects.get(request_id=request_id, role="assistant")
    assert answer.status == Message.Status.FAILED
    assert answer.content == stream.content != ""
    assert expected in answer.error
    assert answer.completion_tokens == 3 and not answer.usage_reported
    assert Message.objects.get(request_id=request_id, role="user").content.endswith("hello")


@pytest.mark.parametrize(
    ("message", "model", "expected"),
    [
        ("[[devllm status=500]] hi", "dev/dev-chat", "failed (HTTP 500)"),
        ("[[devllm status=401]] hi", "dev/dev-chat", "refused our credentials"),
        ("[[devllm status=429 retry_after=7]] hi", "dev/dev-chat", "Try again in 7 seconds"),
        ("hello", "offline/ghost", "could not be reached"),
        ("[[devllm hang_before]] hi", "dev/dev-chat", "did not answer in time"),
    ],
    ids=["http-500", "http-401", "http-429", "connection-refused", "timeout"],
)
def test_upstream_failure_before_first_token_keeps_the_user_message_and_saves_the_failure(
    site, alice, message, model, expected
):
    client = log_in(site.url, "alice")

    stream = post_stream(client, {"message": message, "model": model})

    assert stream.status_code == 200
    assert stream.events[0].name == "start"
    assert stream.named("delta") == []
    error = stream.named("error")
    assert error and expected in error[0].data["message"]
    request_id = stream.named("start")[0].data["request_id"]
    assert Message.objects.get(request_id=request_id, role="user").content == message
    answer = Message.objects.get(request_id=request_id, role="assistant")
    assert answer.status == Message.Status.FAILED
    assert expected in answer.error
    assert answer.content == ""


def test_keepalive_comments_flow_while_the_model_is_silent(site, alice):
    client = log_in(site.url, "alice")

    stream = post_stream(client, {"message": "[[devllm hang_after=2]] hi"})

    # SSE_KEEPALIVE_SECONDS is 0.5 and the read timeout 3 s for the test server.
    keepalives = [e for e in stream.named("comment") if e.data == "keep-alive"]
    assert len(keepalives) >= 3
    assert len(stream.named("delta")) == 2
    assert stream.events[-1].name == "error"
    answer = Message.objects.get(
        request_id=stream.named("start")[0].data["request_id"], role="assistant"
    )
    assert answer.status == Message.Status.FAILED
    assert answer.content == stream.content


def test_reasoning_model_streams_and_saves_its_reasoning(site, alice):
    client = log_in(site.url, "alice")

    stream = post_stream(client, {"message": "Why is the sky blue?", "model": "dev/dev-reasoner"})

    reasoning = stream.named("reasoning")
    assert reasoning
    names = [e.name for e in stream.events]
    assert names.index("reasoning") < names.index("delta")
    answer = Message.objects.get(
        request_id=stream.named("start")[0].data["request_id"], role="assistant"
    )
    assert answer.reasoning == "".join(e.data["content"] for e in reasoning)
    assert answer.content == stream.content


def test_regenerate_streams_a_new_answer_and_the_model_never_sees_the_old_one(site, devllm, alice):
    client = log_in(site.url, "alice")
    first = post_stream(client, {"message": "Tell me a story."})
    started = first.named("start")[0].data

    again = post_stream(
        client,
        {"action": "regenerate", "conversation": started["conversation"]},
        headers={"X-Request-ID": "regenerate-0001"},
    )

    restart = again.named("start")[0].data
    assert restart["replaces"] == [started["assistant_message"]]
    assert restart["user_message"] == started["user_message"]
    assert again.events[-1].data["status"] == "completed"
    assert devllm_record(devllm, "regenerate-0001")["messages"] == [
        {"role": "user", "content": "Tell me a story."}
    ]
    old = Message.objects.get(pk=started["assistant_message"])
    assert old.superseded_at is not None and old.content == first.content
