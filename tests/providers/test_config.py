"""Endpoint configuration and chunk parsing."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from conversations import providers
from conversations.exceptions import ProviderError, UnknownModel
from conversations.providers.client import AnswerCheck, ModelChunk, parse_chunk
from conversations.providers.config import load_endpoints_file

TIMEOUTS = {"connect_timeout": 5.0, "read_timeout": 60.0, "max_retries": 1}


def test_content_chunk():
    chunk = parse_chunk(
        b'{"id":"c1","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}'
    )
    assert (chunk.response_id, chunk.content, chunk.reasoning) == ("c1", "Hi", "")
    assert chunk.finish_reason is None and chunk.usage is None


def test_reasoning_chunk_in_deepseek_style():
    chunk = parse_chunk(
        '{"id":"c1","choices":[{"delta":{"content":null,"reasoning_content":"hmm"}}]}'
    )
    assert (chunk.content, chunk.reasoning) == ("", "hmm")


def test_usage_chunk_has_no_choices():
    chunk = parse_chunk(
        '{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":7}}'
    )
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (3, 7)


def test_error_payload_becomes_a_provider_error():
    with pytest.raises(ProviderError, match="overloaded"):
        parse_chunk('{"error":{"message":"overloaded"}}')


@pytest.mark.parametrize("payload", ["{nope", "[1]", '"text"'])
def test_malformed_chunk_becomes_a_provider_error(payload):
    with pytest.raises(ProviderError, match="malformed"):
        parse_chunk(payload)


def test_endpoints_file_lists_models_by_key(tmp_path):
    path = tmp_path / "endpoints.toml"
    path.write_text(
        """
[[endpoints]]
name = "deepseek"
base_url = "https://api.deepseek.com"
api_key_env = "DEEPSEEK_API_KEY"
read_timeout = 300

[[endpoints.models]]
id = "deepseek-reasoner"
label = "DeepSeek R1"
"""
    )
    (endpoint,) = load_endpoints_file(path, **TIMEOUTS)
    assert endpoint.read_timeout == 300 and endpoint.connect_timeout == 5.0
    assert endpoint.models[0].key == "deepseek/deepseek-reasoner"
    assert endpoint.models[0].label == "DeepSeek R1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[[endpoints]]\nname='x'\nbase_url='http://h'\n",
        "[[endpoints]]\nname='a/b'\nbase_url='http://h'\n[[endpoints.models]]\nid='m'\n",
        "[[endpoints]]\nbase_url='http://h'\n[[endpoints.models]]\nid='m'\n",
        "not toml at all [",
    ],
    ids=["empty", "no-models", "slash-in-name", "no-name", "bad-toml"],
)
def test_bad_endpoints_file_is_refused(tmp_path, text):
    path = tmp_path / "endpoints.toml"
    path.write_text(text)
    with pytest.raises(ImproperlyConfigured):
        load_endpoints_file(path, **TIMEOUTS)


@pytest.mark.parametrize(
    ("upstream", "openai"),
    [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("tool_use", "tool_calls"),
        ("SAFETY", "content_filter"),
        ("something-new", "stop"),
    ],
)
def test_finish_reasons_of_other_apis_become_openai_values(upstream, openai):
    chunk = parse_chunk('{"id":"c","choices":[{"delta":{},"finish_reason":"' + upstream + '"}]}')
    assert chunk.finish_reason == openai


def test_a_whole_completion_reads_as_one_chunk():
    chunk = parse_chunk(
        '{"id":"c","choices":[{"message":{"role":"assistant","content":"All of it"},'
        '"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":3}}'
    )
    assert (chunk.content, chunk.finish_reason) == ("All of it", "stop")
    assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (4, 3)


def check_after(*chunks: ModelChunk) -> AnswerCheck:
    check = AnswerCheck()
    for chunk in chunks:
        check.saw(chunk)
    return check


def test_a_stream_is_complete_with_an_answer_and_a_done_or_finish_reason():
    check_after(ModelChunk(content="Hi")).ended(done=True)
    check_after(ModelChunk(content="Hi"), ModelChunk(finish_reason="stop")).ended(done=False)
    check_after(ModelChunk(finish_reason="length")).ended(done=True)


def test_a_stream_that_stops_without_done_or_finish_reason_is_incomplete():
    with pytest.raises(ProviderError, match="ended before its answer was complete"):
        check_after(ModelChunk(content="Hi")).ended(done=False)


def test_an_empty_answer_is_a_failure_not_a_completed_answer():
    with pytest.raises(ProviderError, match="empty answer"):
        check_after(ModelChunk(response_id="x")).ended(done=True)
    with pytest.raises(ProviderError, match="empty answer"):
        check_after(ModelChunk(finish_reason="stop")).ended(done=True)


@pytest.mark.parametrize(
    ("status", "body", "answered", "reason"),
    [
        (400, {"message": "context too long", "code": "context_length_exceeded"}, 400, "too long"),
        (400, "prompt too long", 400, "prompt too long"),
        (422, None, 422, "HTTP 422"),
        (401, None, 502, "credentials"),
        (404, None, 502, "HTTP 404"),
        (500, "<html><title>Oops</title></html>", 502, "Oops"),
        (503, None, 503, "HTTP 503"),
        (504, None, 504, "HTTP 504"),
    ],
)
def test_upstream_statuses_keep_their_meaning_and_reason(status, body, answered, reason):
    error = ProviderError.from_status(status, {}, body)
    assert error.status == answered
    assert reason in error.message


def test_an_upstream_429_keeps_its_wait():
    error = ProviderError.from_status(429, {"retry-after": "6.5"}, None)
    assert (error.status, error.retry_after) == (429, 7)
    assert ProviderError.from_status(429, {}, None).retry_after == 1


@pytest.fixture
def two_endpoints_file(tmp_path, settings):
    """Endpoints where "shared" is served twice and "solo" once, read as the server reads them."""
    path = tmp_path / "endpoints.toml"
    path.write_text(
        "".join(
            f"[[endpoints]]\nname = '{name}'\nbase_url = 'http://{name}'\n"
            + "".join(f"[[endpoints.models]]\nid = '{model}'\n" for model in models)
            for name, models in (("one", ["shared", "solo"]), ("two", ["shared", "org/tuned"]))
        )
    )
    settings.LLM_ENDPOINTS_FILE = str(path)
    providers.endpoints.cache_clear()
    yield
    providers.endpoints.cache_clear()


def test_a_model_is_found_by_its_key_or_by_an_upstream_id_one_endpoint_serves(
    two_endpoints_file,
):
    assert providers.get_model("one/solo").key == "one/solo"
    assert providers.get_model("solo").key == "one/solo"  # for clients that split on "/"
    assert providers.get_model("org/tuned").key == "two/org/tuned"
    with pytest.raises(UnknownModel, match="several endpoints; name one: one/shared, two/shared"):
        providers.get_model("shared")
    with pytest.raises(UnknownModel, match="Unknown model 'nothing'"):
        providers.get_model("nothing")
