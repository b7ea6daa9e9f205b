"""Validate a request to OpenAI's Responses API, naming the field that is wrong.

chatsite answers the Responses API over any chat-completions upstream, so a request becomes
chat messages and chat parameters: `instructions` a system message, each input item a message
(`developer` sent as `system`, as on /v1/chat/completions), `max_output_tokens` the upstream's
`max_tokens`. What cannot be relayed that way (tools, files and images, reasoning settings,
server-side conversations, truncation, prompt templates, structured output) is refused with a
400 whose `param` names the field. So is any field OpenAI does not document here: unlike
/v1/chat/completions (conversations.v1.schema), nothing goes to the upstream unread,
because the upstream speaks another API. Explicit nulls mean "not given", as for OpenAI.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conversations.exceptions import InvalidChatRequest
from conversations.v1.schema import ROLES
from conversations.validation import check_storable

TOOLS = "tool calling is not supported by this server"
REFUSED = {
    "tools": TOOLS,
    "tool_choice": TOOLS,
    "max_tool_calls": TOOLS,
    "reasoning": "reasoning settings are not supported by this server",
    "include": "extra output items ('include') are not supported by this server",
    "truncation": "truncation is not supported by this server: the input must fit the model",
    "prompt": "prompt templates are not supported by this server",
    "conversation": "server-side conversations are not supported; use previous_response_id",
    "top_logprobs": "logprobs are not supported by this server",
}
NUMBER_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
# Passed to the model as sent (chat completions takes them too), and repeated in the Response.
PASSED_STRINGS = ("user", "safety_identifier", "prompt_cache_key", "service_tier")
# Read here, or only repeated in the Response (metadata, store: chatsite saves every turn).
READ = (
    "model",
    "input",
    "instructions",
    "stream",
    "stream_options",
    "background",
    "previous_response_id",
    "max_output_tokens",
    "metadata",
    "store",
    "parallel_tool_calls",
    "text",
    *NUMBER_RANGES,
    *PASSED_STRINGS,
)
TEXT_PARTS = ("input_text", "output_text")
# OpenAI's limits on metadata.
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512


@dataclass(frozen=True, slots=True)
class ResponseRequest:
    model: str
    # The input items as chat messages: {"role", "content"} with text content.
    input: list[dict[str, str]]
    instructions: str | None
    previous_response_id: str | None
    stream: bool
    background: bool
    # Chat-completions parameters for the upstream.
    params: dict[str, Any]
    # The request's fields that the Response object repeats (see openai_responses_events).
    echo: dict[str, Any]

    def messages(self, thread: list[dict[str, str]]) -> list[dict[str, str]]:
        """Return the prompt: the thread a previous response ended (none for a first call),
        the instructions as a system message, then the input.

        The instructions follow the thread rather than lead it, so that the prompt still
        begins with the thread and the call continues its conversation (conversations.threads);
        instructions the thread already ends under are not repeated.
        """
        system = []
        if self.instructions is not None:
            in_force = next((m["content"] for m in reversed(thread) if m["role"] == "system"), None)
            if in_force != self.instructions:
                system = [{"role": "system", "content": self.instructions}]
        return [*thread, *system, *self.input]


def parse_response_request(
    body: dict[str, Any], *, max_chars: int, max_messages: int
) -> ResponseRequest:
    """Return the validated request, or raise InvalidChatRequest naming the bad field."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidChatRequest("'model' is required and must be a string.", field="model")
    for name, reason in REFUSED.items():
        if body.get(name) not in (None, [], {}):
            raise InvalidChatRequest(f"'{name}': {reason}.", field=name)
    for name in sorted(body.keys() - READ - REFUSED.keys()):
        if body[name] is not None:
            raise InvalidChatRequest(f"Unrecognized request argument supplied: {name}", field=name)
    stream = _optional(body, "stream", bool, "a boolean") or False
    _check_stream_options(body.get("stream_options"), stream)
    instructions = _optional(body, "instructions", str, "a string")
    if instructions is not None:
        _check_text(instructions, "instructions", max_chars)
    previous = _optional(body, "previous_response_id", str, "a string")
    background = _optional(body, "background", bool, "a boolean") or False
    params = _params(body)
    return ResponseRequest(
        model=model,
        input=_input(body.get("input"), max_chars, max_messages),
        instructions=instructions,
        previous_response_id=previous,
        stream=stream,
        background=background,
        params=params,
        echo=_echo(body, params, instructions, previous, background),
    )


def _optional(body: Mapping[str, Any], name: str, kind: type | tuple, what: str) -> Any:
    """Return body[name], None when absent or null; refuse a value of another type."""
    value = body.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise InvalidChatRequest(f"'{name}' must be {what}.", field=name)
    return value


def _check_text(text: str, where: str, max_chars: int) -> None:
    check_storable(text, field=where, label=f"'{where}'")
    if len(text) > max_chars:
        raise InvalidChatRequest(
            f"'{where}' is too long: {len(text)} characters, at most {max_chars}.", field=where
        )


def _input(raw: Any, max_chars: int, max_messages: int) -> list[dict[str, str]]:
    if isinstance(raw, str):
        _check_text(raw, "input", max_chars)
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise InvalidChatRequest(
            "'input' must be a string or a non-empty array of messages.", field="input"
        )
    if len(raw) > max_messages:
        raise InvalidChatRequest(
            f"'input' has {len(raw)} items; this server takes at most {max_messages}.",
            field="input",
        )
    return [_item(item, f"input[{i}]", max_chars) for i, item in enumerate(raw)]


def _item(item: Any, where: str, max_chars: int) -> dict[str, str]:
    """One input item as a chat message. Its `id`, `status` and the parts' `annotations`
    (what a client re-sending an earlier output carries) say nothing to the model."""
    if not isinstance(item, dict):
        raise InvalidChatRequest(f"'{where}' must be an object.", field=where)
    kind = item.get("type") or "message"
    if kind != "message":
        raise InvalidChatRequest(
            f"'{where}.type': only message items are supported, not {kind!r} ({TOOLS}).",
            field=f"{where}.type",
        )
    role = ROLES.get(item.get("role"))
    if role is None:
        raise InvalidChatRequest(
            f"'{where}.role' must be one of user, assistant, system, developer.",
            field=f"{where}.role",
        )
    content = _content(item.get("content"), f"{where}.content")
    _check_text(content, f"{where}.content", max_chars)
    return {"role": role, "content": content}


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidChatRequest(
            f"'{where}' must be a string or an array of text parts.", field=where
        )
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            raise InvalidChatRequest(
                f"'{where}[{j}]': only text parts (input_text, output_text) are supported"
                + (f", not {kind!r}." if isinstance(kind, str) else "."),
                field=f"{where}[{j}]",
            )
        if not isinstance(part.get("text"), str):
            raise InvalidChatRequest(
                f"'{where}[{j}].text' must be a string.", field=f"{where}[{j}].text"
            )
        texts.append(part["text"])
    return "".join(texts)


def _check_stream_options(options: Any, stream: bool) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise InvalidChatRequest("'stream_options' must be an object.", field="stream_options")
    if not stream:
        raise InvalidChatRequest(
            "'stream_options' is only allowed when 'stream' is true.", field="stream_options"
        )
    for name in sorted(options.keys() - {"include_obfuscation"}):
        raise InvalidChatRequest(
            f"'stream_options.{name}' is not a known stream option.",
            field=f"stream_options.{name}",
        )
    check_obfuscation(options.get("include_obfuscation"), "stream_options.include_obfuscation")


def check_obfuscation(value: Any, where: str) -> None:
    """Refuse stream obfuscation: chatsite sends no padding (false, or none, is fine)."""
    if value not in (None, False):
        raise InvalidChatRequest(
            f"'{where}': this server sends no obfuscation padding; leave it out or set it to "
            "false.",
            field=where,
        )


def _params(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions parameters for the upstream, checked."""
    params: dict[str, Any] = {}
    for name, (low, high) in NUMBER_RANGES.items():
        value = _optional(body, name, int | float, f"a number from {low} to {high}")
        if value is not None and not low <= value <= high:
            raise InvalidChatRequest(f"'{name}' must be a number from {low} to {high}.", field=name)
        if value is not None:
            params[name] = value
    max_output = _optional(body, "max_output_tokens", int, "a positive integer")
    if max_output is not None:
        if max_output < 1:
            raise InvalidChatRequest(
                "'max_output_tokens' must be a positive integer.", field="max_output_tokens"
            )
        params["max_tokens"] = max_output
    for name in PASSED_STRINGS:
        if (value := _optional(body, name, str, "a string")) is not None:
            params[name] = value
    return params


def _echo(
    body: dict[str, Any],
    params: dict[str, Any],
    instructions: str | None,
    previous: str | None,
    background: bool,
) -> dict[str, Any]:
    """The fields the Response object repeats, as the request gave them (checked here)."""
    store = _optional(body, "store", bool, "a boolean")
    parallel = _optional(body, "parallel_tool_calls", bool, "a boolean")
    _check_text_config(body.get("text"))
    return {
        "background": background,
        "instructions": instructions,
        "max_output_tokens": params.get("max_tokens"),
        "metadata": _metadata(body.get("metadata")),
        "parallel_tool_calls": True if parallel is None else parallel,
        "previous_response_id": previous,
        "store": True if store is None else store,
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        **{name: params.get(name) for name in PASSED_STRINGS},
    }


def _metadata(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > METADATA_KEYS:
        raise InvalidChatRequest(
            f"'metadata' must be an object of at most {METADATA_KEYS} keys.", field="metadata"
        )
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS or not isinstance(value, str):
            raise InvalidChatRequest(
                f"'metadata' keys must be at most {METADATA_KEY_CHARS} characters and its "
                "values strings.",
                field="metadata",
            )
        if len(value) > METADATA_VALUE_CHARS:
            raise InvalidChatRequest(
                f"'metadata.{key}' is longer than {METADATA_VALUE_CHARS} characters.",
                field="metadata",
            )
        check_storable(key + value, field="metadata", label="'metadata'")
    return metadata


def _check_text_config(text: Any) -> None:
    """Only plain text output: structured output (json_schema) cannot be promised over an
    upstream chatsite does not know."""
    if text is None:
        return
    if not isinstance(text, dict):
        raise InvalidChatRequest("'text' must be an object.", field="text")
    for name in sorted(text.keys() - {"format"}):
        if text[name] is not None:
            raise InvalidChatRequest(f"'text.{name}' is not supported.", field=f"text.{name}")
    output_format = text.get("format")
    if output_format is not None and output_format != {"type": "text"}:
        raise InvalidChatRequest(
            '\'text.format\': only plain text output ({"type": "text"}) is supported.',
            field="text.format",
        )


def parse_retrieve_query(query: Mapping[str, str]) -> tuple[bool, int]:
    """Read GET /v1/responses/<id>'s query: whether to stream, and the sequence number the
    stream starts after (-1: from the first event)."""
    stream = _query_bool(query, "stream")
    check_obfuscation(_query_bool(query, "include_obfuscation") or None, "include_obfuscation")
    if query.get("include") or query.get("include[]"):
        raise InvalidChatRequest(f"'include': {REFUSED['include']}.", field="include")
    raw = query.get("starting_after")
    if raw is None or raw == "":
        return stream, -1
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidChatRequest(
            "'starting_after' must be a sequence number, a whole number.", field="starting_after"
        )
    return stream, int(raw)


def _query_bool(query: Mapping[str, str], name: str) -> bool:
    raw = (query.get(name) or "false").lower()
    if raw not in ("true", "false"):
        raise InvalidChatRequest(f"'{name}' must be true or false.", field=name)
    return raw == "true"
