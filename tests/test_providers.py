"""Endpoint configuration and chunk parsing."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from conversations.exceptions import ProviderError
from conversations.providers.client import parse_chunk
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
