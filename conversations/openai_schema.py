"""Validate an OpenAI chat completion request body, naming the field that is wrong.

Unknown fields are ignored, so newer SDKs keep working; fields chatsite cannot honour
(tools, n > 1, non-text content) are refused rather than silently dropped.
"""

from dataclasses import dataclass
from typing import Any

from conversations.exceptions import InvalidChatRequest

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
UNSUPPORTED = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")
# Passed to the model as given, once their type and range are checked.
NUMBER_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
POSITIVE_INTEGERS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: list[dict[str, str]]
    stream: bool
    include_usage: bool
    params: dict[str, Any]


def parse_chat_completion(body: dict[str, Any], *, max_chars: int) -> CompletionRequest:
    """Return the validated request, or raise InvalidChatRequest naming the bad field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidChatRequest("'model' is required and must be a string.", field="model")
    for name in UNSUPPORTED:
        if body.get(name) not in (None, [], {}):
            raise InvalidChatRequest(f"'{name}' is not supported by this server.", field=name)
    if body.get("n", 1) != 1:
        raise InvalidChatRequest("Only n=1 is supported.", field="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidChatRequest("'stream' must be a boolean.", field="stream")
    return CompletionRequest(
        model=model,
        messages=_messages(body.get("messages"), max_chars),
        stream=stream,
        include_usage=_include_usage(body.get("stream_options"), stream),
        params=_params(body),
    )


def _messages(raw: Any, max_chars: int) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidChatRequest("'messages' must be a non-empty array.", field="messages")
    messages = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidChatRequest(f"'{where}' must be an object.", field=where)
        role = ROLES.get(message.get("role"))
        if role is None:
            raise InvalidChatRequest(
                f"'{where}.role' must be one of system, developer, user, assistant.",
                field=f"{where}.role",
            )
        content = _text(message.get("content"), f"{where}.content")
        if len(content) > max_chars:
            raise InvalidChatRequest(
                f"'{where}.content' is too long: {len(content)} characters, at most {max_chars}.",
                field=f"{where}.content",
            )
        messages.append({"role": role, "content": content})
    return messages


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidChatRequest(f"'{where}': only text parts are supported.", field=where)
            if not isinstance(part.get("text"), str):
                raise InvalidChatRequest(f"'{where}': a text part needs 'text'.", field=where)
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidChatRequest(f"'{where}' must be a string or an array of text parts.", field=where)


def _include_usage(options: Any, stream: bool) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidChatRequest("'stream_options' must be an object.", field="stream_options")
    if not stream:
        raise InvalidChatRequest(
            "'stream_options' is only allowed when 'stream' is true.", field="stream_options"
        )
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise InvalidChatRequest(
            "'stream_options.include_usage' must be a boolean.",
            field="stream_options.include_usage",
        )
    return include


def _params(body: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, (low, high) in NUMBER_RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise InvalidChatRequest(f"'{name}' must be a number from {low} to {high}.", field=name)
        params[name] = value
    for name in POSITIVE_INTEGERS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidChatRequest(f"'{name}' must be a positive integer.", field=name)
        params[name] = value
    if (seed := body.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidChatRequest("'seed' must be an integer.", field="seed")
        params["seed"] = seed
    if (stop := body.get("stop")) is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if (
            not isinstance(stops, list)
            or not 1 <= len(stops) <= 4
            or not all(isinstance(s, str) for s in stops)
        ):
            raise InvalidChatRequest("'stop' must be a string or up to 4 strings.", field="stop")
        params["stop"] = stop
    if (response_format := body.get("response_format")) is not None:
        if not isinstance(response_format, dict) or "type" not in response_format:
            raise InvalidChatRequest(
                "'response_format' must be an object with a 'type'.", field="response_format"
            )
        params["response_format"] = response_format
    return params
