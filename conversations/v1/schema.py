"""Validate an OpenAI chat completion request body, naming the field that is wrong.

Every field OpenAI documents is either passed to the model (after its type is checked) or
refused with a 400 that names it; none is silently dropped. Fields chatsite cannot honour are
those whose answer it could not relay or save: tools and function calls, audio, logprobs,
web search, several choices. A field OpenAI does not document (a newer SDK's, or an
upstream's own such as vLLM's `top_k`) is passed to the upstream unchanged, which may refuse
it; its 400 then reaches the client with the upstream's reason. Explicit nulls mean "not
given", as they do for OpenAI.
"""

from dataclasses import dataclass
from typing import Any

from conversations.exceptions import InvalidChatRequest
from conversations.validation import check_storable

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# The fields this module reads itself; the rest of the body becomes the model's parameters.
OWN_FIELDS = ("model", "messages", "stream", "stream_options", "n")
REFUSED = {
    "tools": "tool calling is not supported by this server",
    "functions": "function calling is not supported by this server",
    "tool_choice": "tool calling is not supported by this server",
    "function_call": "function calling is not supported by this server",
    "parallel_tool_calls": "tool calling is not supported by this server",
    "audio": "audio output is not supported by this server",
    "top_logprobs": "logprobs are not supported by this server",
    "web_search_options": "web search is not supported by this server",
}
NUMBER_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
POSITIVE_INTEGERS = ("max_tokens", "max_completion_tokens")
STRINGS = (
    "reasoning_effort",
    "verbosity",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
)
# Per-message fields that would need tool support to mean anything.
MESSAGE_REFUSED = ("tool_calls", "function_call", "audio")


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    # {"role", "content"} with text content, plus any other field the client gave a message
    # (a `name`, a provider's prefill flag), passed to the model as sent.
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    params: dict[str, Any]


def parse_chat_completion(
    body: dict[str, Any], *, max_chars: int, max_messages: int = 1000
) -> CompletionRequest:
    """Return the validated request, or raise InvalidChatRequest naming the bad field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidChatRequest("'model' is required and must be a string.", field="model")
    for name, reason in REFUSED.items():
        if body.get(name) not in (None, [], {}):
            raise InvalidChatRequest(f"'{name}': {reason}.", field=name)
    if body.get("n") not in (None, 1):
        raise InvalidChatRequest("Only n=1 is supported.", field="n")
    stream = _optional(body, "stream", bool, "a boolean") or False
    return CompletionRequest(
        model=model,
        messages=_messages(body.get("messages"), max_chars, max_messages),
        stream=stream,
        include_usage=_include_usage(body.get("stream_options"), stream),
        params=_params(body),
    )


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Return body[name], None when absent or null; refuse a value of another type."""
    value = body.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise InvalidChatRequest(f"'{name}' must be {what}.", field=name)
    return value


def _messages(raw: Any, max_chars: int, max_messages: int) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidChatRequest("'messages' must be a non-empty array.", field="messages")
    if len(raw) > max_messages:
        raise InvalidChatRequest(
            f"'messages' has {len(raw)} messages; this server takes at most {max_messages}.",
            field="messages",
        )
    return [_message(message, f"messages[{i}]", max_chars) for i, message in enumerate(raw)]


def _message(message: Any, where: str, max_chars: int) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise InvalidChatRequest(f"'{where}' must be an object.", field=where)
    role = ROLES.get(message.get("role"))
    if role is None:
        raise InvalidChatRequest(
            f"'{where}.role' must be one of system, developer, user, assistant.",
            field=f"{where}.role",
        )
    for name in MESSAGE_REFUSED:
        if message.get(name) not in (None, []):
            raise InvalidChatRequest(
                f"'{where}.{name}': tool calling is not supported by this server.",
                field=f"{where}.{name}",
            )
    raw_content = message.get("content")
    # OpenAI allows an assistant message without content (its text may be elsewhere).
    content = "" if raw_content is None and role == "assistant" else _text(raw_content, where)
    check_storable(content, field=f"{where}.content", label=f"'{where}.content'")
    if len(content) > max_chars:
        raise InvalidChatRequest(
            f"'{where}.content' is too long: {len(content)} characters, at most {max_chars}.",
            field=f"{where}.content",
        )
    extra = {k: v for k, v in message.items() if k not in ("role", "content", *MESSAGE_REFUSED)}
    return {**extra, "role": role, "content": content}


def _text(content: Any, where: str) -> str:
    where = f"{where}.content"
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
    for name in options.keys() - {"include_usage", "include_obfuscation"}:
        raise InvalidChatRequest(
            f"'stream_options.{name}' is not a known stream option.",
            field=f"stream_options.{name}",
        )
    if options.get("include_obfuscation"):
        raise InvalidChatRequest(
            "'stream_options.include_obfuscation': this server sends no obfuscation padding; "
            "leave it out or set it to false.",
            field="stream_options.include_obfuscation",
        )
    include = options.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise InvalidChatRequest(
            "'stream_options.include_usage' must be a boolean.",
            field="stream_options.include_usage",
        )
    return bool(include)


def _params(body: dict[str, Any]) -> dict[str, Any]:
    """Check the fields passed to the model; return them without nulls."""
    for name, (low, high) in NUMBER_RANGES.items():
        value = _optional(body, name, int | float, f"a number from {low} to {high}")
        if value is not None and not low <= value <= high:
            raise InvalidChatRequest(f"'{name}' must be a number from {low} to {high}.", field=name)
    for name in POSITIVE_INTEGERS:
        value = _optional(body, name, int, "a positive integer")
        if value is not None and value < 1:
            raise InvalidChatRequest(f"'{name}' must be a positive integer.", field=name)
    for name in STRINGS:
        _optional(body, name, str, "a string")
    _optional(body, "seed", int, "an integer")
    _optional(body, "store", bool, "a boolean")
    if _optional(body, "logprobs", bool, "a boolean"):
        raise InvalidChatRequest(f"'logprobs': {REFUSED['top_logprobs']}.", field="logprobs")
    if body.get("modalities") not in (None, ["text"]):
        raise InvalidChatRequest("Only the 'text' modality is supported.", field="modalities")
    _check_stop(body.get("stop"))
    _check_objects(body)
    return {
        name: value
        for name, value in body.items()
        if value is not None and name not in OWN_FIELDS and name not in REFUSED
    }


def _check_stop(stop: Any) -> None:
    if stop is None:
        return
    stops = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(stops, list)
        or not 1 <= len(stops) <= 4
        or not all(isinstance(s, str) for s in stops)
    ):
        raise InvalidChatRequest("'stop' must be a string or up to 4 strings.", field="stop")


def _check_objects(body: dict[str, Any]) -> None:
    response_format = body.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict) or "type" not in response_format
    ):
        raise InvalidChatRequest(
            "'response_format' must be an object with a 'type'.", field="response_format"
        )
    logit_bias = _optional(body, "logit_bias", dict, "an object of token IDs to numbers")
    for token, bias in (logit_bias or {}).items():
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise InvalidChatRequest(
                f"'logit_bias[{token}]' must be a number from -100 to 100.", field="logit_bias"
            )
    metadata = _optional(body, "metadata", dict, "an object of strings")
    if metadata and not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidChatRequest("'metadata' values must be strings.", field="metadata")
    _optional(body, "prediction", dict, "an object")
