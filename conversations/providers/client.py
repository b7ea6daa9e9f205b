"""Stream chat completions from one OpenAI-compatible endpoint.

The SDK's typed chunk objects are the main CPU cost of a proxied stream, so this client keeps
the SDK for base URL, auth, retries and error mapping, but reads the raw `data:` lines of
`with_streaming_response` and parses them with orjson.
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import orjson

from conversations.exceptions import ProviderError
from conversations.providers.config import Endpoint


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


@dataclass(slots=True)
class ModelChunk:
    """The part of one streamed chunk that chatsite uses."""

    response_id: str = ""
    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


def parse_chunk(payload: bytes | str) -> ModelChunk:
    """Turn one `data:` payload into a ModelChunk, raising ProviderError for errors and junk."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProviderError("The model sent a malformed response.") from None
    if not isinstance(data, dict):
        raise ProviderError("The model sent a malformed response.")
    if "error" in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise ProviderError(f"The model failed while answering: {message or 'unknown error'}")
    chunk = ModelChunk(response_id=data.get("id") or "")
    choices = data.get("choices") or ()
    if choices:
        choice = choices[0]
        delta = choice.get("delta") or {}
        chunk.content = delta.get("content") or ""
        # DeepSeek-style reasoning models send their thinking as an extra delta field.
        chunk.reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
        chunk.finish_reason = choice.get("finish_reason")
    usage = data.get("usage")
    if usage:
        chunk.usage = Usage(usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return chunk


class ChatModelClient:
    """One endpoint's client; create it once and reuse it, since it pools connections."""

    def __init__(self, endpoint: Endpoint, *, max_connections: int = 200) -> None:
        self.endpoint = endpoint
        self._sdk = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "missing",
            max_retries=endpoint.max_retries,
            timeout=openai.Timeout(endpoint.read_timeout, connect=endpoint.connect_timeout),
            http_client=openai.DefaultAsyncHttpxClient(
                # The default keep-alive pool is too small for many concurrent streams.
                limits=httpx2.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
            ),
        )

    async def stream_chat(
        self, *, model: str, messages: list[dict[str, str]], request_id: str, **params: Any
    ) -> AsyncIterator[ModelChunk]:
        """Yield the model's chunks; closing this generator closes the upstream connection.

        Every failure surfaces as ProviderError with a message a person can read.
        """
        try:
            async with self._sdk.chat.completions.with_streaming_response.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"X-Request-ID": request_id},
                **params,
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, `event:` lines
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        return
                    yield parse_chunk(payload)
        except openai.APIStatusError as exc:
            raise ProviderError.from_status(exc.status_code, exc.response.headers) from exc
        except openai.APITimeoutError as exc:
            raise ProviderError("The model did not answer in time.") from exc
        except openai.APIConnectionError as exc:
            raise ProviderError("The model could not be reached.") from exc
        except httpx2.TimeoutException as exc:
            raise ProviderError("The model stopped sending its answer (timed out).") from exc
        except httpx2.TransportError as exc:
            raise ProviderError("The connection to the model broke off mid-answer.") from exc

    async def aclose(self) -> None:
        await self._sdk.close()
