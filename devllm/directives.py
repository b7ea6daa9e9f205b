"""Parse `[[devllm key=value flag]]` directives that steer the development server.

Tests and demos put a directive in the last user message to ask for a specific
behaviour (echo the prompt, fail with a status, drop the connection ...). The
directive is removed from the text before the answer is chosen or echoed.
"""

import re
from typing import Any

DIRECTIVE_RE = re.compile(r"\[\[devllm(?P<body>(?:\s+[^\]\s]+)*)\s*\]\]")

# Keys whose values are whole numbers; anything else is kept as a string.
INT_KEYS = frozenset(
    {
        "tokens",
        "status",
        "retry_after",
        "error_after",
        "drop_after",
        "malformed_after",
        "hang_after",
    }
)
FLOAT_KEYS = frozenset({"delay_ms", "first_token_ms"})
FLAGS = frozenset({"echo", "hang", "hang_before"})


class DirectiveError(ValueError):
    """Signal a directive with a malformed value (reported to the client as a 400)."""


def _convert(key: str, value: str) -> Any:
    """Convert a directive value to the type its key expects."""
    try:
        if key in INT_KEYS:
            number: int | float = int(value)
        elif key in FLOAT_KEYS:
            number = float(value)
        else:
            return value
    except ValueError:
        raise DirectiveError(f"devllm directive {key}={value!r} is not a number") from None
    if number < 0:
        raise DirectiveError(f"devllm directive {key}={value!r} must not be negative")
    return number


def parse_directives(text: str) -> tuple[str, dict[str, Any]]:
    """Return the text without directives and the merged directive dict.

    `key=value` pairs become ints/floats where the key is numeric; bare words
    become `True` flags. Later directives override earlier ones.
    """
    found: dict[str, Any] = {}
    for match in DIRECTIVE_RE.finditer(text):
        for item in match.group("body").split():
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not key:
                continue
            found[key] = _convert(key, value) if sep else True
    cleaned = DIRECTIVE_RE.sub("", text)
    return cleaned, found
