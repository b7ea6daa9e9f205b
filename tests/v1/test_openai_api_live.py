"""The OpenAI-compatible API through the official openai SDK, over real HTTP to daphne."""

import re

import httpx
import openai
import pytest

from conversations.models import ApiKey, Conversation, Message
from tests.conftest import log_in, openai_client
from tests.quirky_upstream import QUIRKS
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROMPT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about Python."},
]


@pytest.fixture
def key(alice, make_api_key) -> str:
    return make_api_key(alice)


@pytest.fixture
def sdk(site, key):
    return openai_client(site, key)


def devllm_record(devllm, request_id: str) -> dict:
    return httpx.get(f"{devllm.url}/_devllm/requests/{request_id}").json()


def request_id_of(completion_id: str) -> str:
    assert completion_id.startswith("chatcmpl-")
    return completion_id.removeprefix("chatcmpl-")


def test_streaming_completion_with_usage_on_the_last_chunk_is_saved(sdk, alice):
    chunks = list(
        sdk.chat.completions.create(
            model="dev/dev-chat",
            messages=PROMPT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) > 50
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    request_id = request_id_of(chunks[0].id)
    answer = Message.objects.get(request_id=request_id, role="assistant")
    assert answer.status == "completed" and answer.content == text
    assert answer.user == alice and answer.usage_reported
    assert answer.completion_tokens == chunks[-1].usage.completion_tokens
    conversation = answer.conversation
    assert conversation.source == Conversation.Source.API
    assert conversation.owner == alice
    prompt = list(conversation.messages.exclude(role="assistant").values_list("role", "content"))
    assert prompt == [("system", "You are terse."), ("user", "Tell me about Python.")]


def test_non_streaming_completion_matches_what_is_saved(sdk, alice):
    completion = sdk.chat.completions.create(model="dev/dev-chat", messages=PROMPT)

    assert completion.object == "chat.completion"
    assert completion.model == "dev/dev-chat"
    message = completion.choices[0].message
    assert message.role == "assistant" and len(message.content) > 50
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    answer = Message.objects.get(request_id=request_id_of(completion.id), role="assistant")
    assert answer.content == message.content and answer.status == "completed"


def test_streaming_and_non_streaming_give_the_same_answer(sdk):
    messages = [{"role": "user", "content": "[[devllm echo]] exact words, naïve café ✓"}]
    whole = sdk.chat.completions.create(model="dev/dev-chat", messages=messages)
    streamed = sdk.chat.completions.create(model="dev/dev-chat", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert whole.choices[0].message.content == text == "exact words, naïve café ✓"


def test_common_parameters_reach_the_model(sdk, devllm):
    completion = sdk.chat.completions.create(
        model="dev/dev-chat",
        messages=PROMPT,
        temperature=0.3,
        max_tokens=5,
        stop=["never-appears"],
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    seen = devllm_record(devllm, request_id_of(completion.id))
    assert seen["max_tokens"] == 5 and seen["temperature"] == 0.3
    assert seen["messages"] == PROMPT


def test_reasoning_model_returns_reasoning_content(sdk):
    completion = sdk.chat.completions.create(model="dev/dev-reasoner", messages=PROMPT)
    assert completion.choices[0].message.model_extra["reasoning_content"]
    streamed = list(
        sdk.chat.completions.create(model="dev/dev-reasoner", messages=PROMPT, stream=True)
    )
    reasoning = [
        c for c in streamed if c.choices and c.choices[0].delta.model_extra.get("reasoning_content")
    ]
    assert reasoning


def test_models_list_offers_every_configured_model(sdk):
    ids = [model.id for model in sdk.models.list()]
    assert ids == ["dev/dev-chat", "dev/dev-reasoner", "offline/ghost"] + [
        f"quirks/{quirk}" for quirk in QUIRKS
    ]


@pytest.mark.parametrize(
    "api_key",
    ["cs-not-a-real-key", "Basic abc"],
    ids=["unknown", "wrong-scheme"],
)
def test_bad_keys_raise_authentication_error(site, alice, api_key):
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(site, api_key).chat.completions.create(model="dev/dev-chat", messages=PROMPT)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert Message.objects.count() == 0


def test_missing_and_malformed_authorization_headers_are_401(site, alice):
    for headers in ({}, {"Authorization": "Token abc"}, {"Authorization": "Bearer"}):
        response = httpx.get(f"{site.url}/v1/models", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_revoked_key_is_refused(site, key, alice):
    assert openai_client(site, key).models.list().data  # the server keeps a copy of the key
    key_id = ApiKey.objects.get(user=alice).pk
    assert log_in(site.url, "alice").post(f"/settings/api-keys/{key_id}/revoke/").is_redirect
    with pytest.raises(openai.AuthenticationError):
        openai_client(site, key).models.list()


def test_unknown_model_raises_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="dev/nope", messages=PROMPT)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"temperature": 5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_malformed_fields_raise_bad_request_naming_the_field(sdk, kwargs, param):
    arguments = {"model": "dev/dev-chat", "messages": PROMPT} | kwargs
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(**arguments)
    assert caught.value.param == param
    assert param.split("[")[0].split(".")[0] in caught.value.message
    assert Message.objects.count() == 0


def test_malformed_json_body_is_a_400_in_openai_shape(site, key):
    response = httpx.post(
        f"{site.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_oversized_body_is_a_413(sdk):
    huge = [{"role": "user", "content": "x" * 3_000_000}]
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="dev/dev-chat", messages=huge)
    assert caught.value.status_code == 413
    assert Message.objects.count() == 0


def test_wrong_method_is_a_405(site, key):
    response = httpx.get(
        f"{site.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_upstream_failure_is_raised_by_the_sdk_and_saved(sdk):
    failing = [{"role": "user", "content": "[[devllm status=500]] hi"}]
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="dev/dev-chat", messages=failing)
    assert caught.value.status_code == 502
    answer = Message.objects.get(role="assistant")
    assert answer.status == "failed" and "HTTP 500" in answer.error
    assert Message.objects.filter(role="user", content=failing[0]["content"]).exists()


def test_upstream_failure_mid_stream_is_raised_by_the_sdk_and_saved(sdk):
    failing = [{"role": "user", "content": "[[devllm error_after=3]] hi"}]
    received = []
    with pytest.raises(openai.APIError, match="failed while answering"):
        for chunk in sdk.chat.completions.create(
            model="dev/dev-chat", messages=failing, stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    # The SDK raises on the error chunk; the server saves right after sending it.
    answer = wait_for(lambda: Message.objects.filter(role="assistant", status="failed").first())
    assert answer.content == "".join(received)
    assert len(received) == 3


def test_successful_responses_carry_rate_limit_headers(site, key):
    response = httpx.post(
        f"{site.url}/v1/chat/completions",
        json={
            "model": "dev/dev-chat",
            "messages": [{"role": "user", "content": "[[devllm tokens=1]] x"}],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "100000"
    assert response.headers["x-ratelimit-remaining-requests"] == "99999"
    reset = response.headers["x-ratelimit-reset-requests"]
    assert re.fullmatch(r"(\d+s|1m0s)", reset), reset
    seconds = int(reset.removesuffix("s")) if reset != "1m0s" else 60
    assert response.headers["RateLimit-Policy"] == '"requests";q=100000;w=60'
    assert response.headers["RateLimit"] == f'"requests";r=99999;t={seconds}'
    # No token quota is set, so OpenAI's -tokens trio is absent.
    assert "x-ratelimit-limit-tokens" not in response.headers
    assert response.headers["X-Request-ID"] == request_id_of(response.json()["id"])


def test_models_retrieve_returns_one_model_or_not_found(sdk):
    model = sdk.models.retrieve("dev/dev-chat")
    assert (model.id, model.owned_by) == ("dev/dev-chat", "dev")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("dev/nope")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/audio/speech"),
        ("GET", "/v1/chat/completions/"),
        ("DELETE", "/v1/files/file-1"),
    ],
)
def test_unknown_v1_urls_are_openai_json_404s(site, key, method, path):
    response = httpx.request(
        method, f"{site.url}{path}", headers={"Authorization": f"Bearer {key}"}, json={}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == {
        "message": f"Invalid URL ({method} {path})",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    # Like every answer of the API's, with the ID to quote when asking about it.
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_the_sdk_raises_not_found_for_an_unknown_endpoint(sdk):
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        sdk.embeddings.create(model="dev/dev-chat", input="hi")


def test_explicit_nulls_are_accepted(site, key, devllm):
    response = httpx.post(
        f"{site.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "dev/dev-chat",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": None},
                {"role": "user", "content": "[[devllm tokens=2]] Again"},
            ],
            "n": None,
            "stream": None,
            "stop": None,
            "temperature": None,
            "stream_options": None,
            "tools": None,
            "user": None,
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"


def test_documented_fields_reach_the_upstream_as_sent(sdk, quirky):
    fields = {
        "reasoning_effort": "low",
        "user": "user-1234",
        "metadata": {"team": "blue"},
        "logit_bias": {"50256": -100},
        "seed": 7,
        "logprobs": False,
    }
    completion = sdk.chat.completions.create(
        model="quirks/crlf",
        messages=PROMPT,
        extra_body={"top_k": 20},  # an upstream's own field, unknown to OpenAI
        **fields,
    )
    sent = httpx.get(f"{quirky.url}/_quirks/requests").json()["data"]
    (body,) = [r["body"] for r in sent if r["request_id"] == request_id_of(completion.id)]
    assert {name: body[name] for name in fields} == fields
    assert body["top_k"] == 20


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"stream": True, "stream_options": {"include_obfuscation": True}}, None),
    ],
)
def test_fields_chatsite_cannot_honour_are_refused_by_name(sdk, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="dev/dev-chat", messages=PROMPT, **extra)
    assert caught.value.param == (param or "stream_options.include_obfuscation")
    assert Message.objects.count() == 0


def test_a_bad_key_uses_openais_wording(site):
    response = httpx.get(f"{site.url}/v1/models", headers={"Authorization": "Bearer cs-wrong"})
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("Incorrect API key provided")
