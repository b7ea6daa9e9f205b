"""Errors of the chat pipeline, each with a message a person can read."""

import math
import re
from collections.abc import Mapping

from django.http import Http404


class ChatError(Exception):
    """A request the chat cannot serve; `status` is the HTTP status to answer with."""

    status = 400

    def __init__(
        self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}


class InvalidChatRequest(ChatError):
    status = 400


class MethodNotAllowed(ChatError):
    status = 405


class PayloadTooLarge(ChatError):
    status = 413


class ConversationNotFound(ChatError, Http404):
    """Missing, or another user's: the two look the same from outside. Pages show a 404."""

    status = 404


class TurnNotFound(ChatError, Http404):
    """No answer of this user's has that request ID (another user's looks the same)."""

    status = 404


class TurnEventsGone(ChatError):
    """The answer exists, but its events are no longer kept (expired, or cut by the cap)."""

    status = 410


class UnknownModel(ChatError):
    status = 400


class DuplicateRequest(ChatError):
    status = 409


class StaleConversation(ChatError):
    """The client acted on a conversation as an older page showed it."""

    status = 409


class ServerBusy(ChatError):
    """No database connection came free in time, or the database cannot be reached: a 503
    to retry, with nothing written, not a failure."""

    status = 503


class UnexpectedError(ChatError):
    """Something unexpected broke; the details are in the log, under the request ID."""

    status = 500


class ProviderError(Exception):
    """The model's endpoint failed; the message is safe to show to the user.

    `status` is what an API client is answered with when this happens before the first
    token: the upstream's meaning kept (a 429 stays a 429 with its wait, a 400 a 400 with the
    upstream's reason, `param` and `code`), and a failure of the upstream itself a 502, 503
    (unreachable or overloaded) or 504 (too slow).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retry_after: int | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.param = param
        self.code = code

    @classmethod
    def from_status(
        cls, status_code: int, headers: Mapping[str, str], body: object = None
    ) -> "ProviderError":
        """Explain an HTTP error status from the model's endpoint in plain words, keeping
        the reason the endpoint gave in its body."""
        error = body if isinstance(body, Mapping) else {}
        reason = upstream_reason(body)
        because = f": {reason}" if reason else "."
        keep = {
            "param": _text_or_none(error.get("param")),
            "code": _text_or_none(error.get("code")),
        }
        if status_code in (401, 403):
            return cls(
                "The model's endpoint refused our credentials; "
                "an administrator must fix the API key."
            )
        if status_code == 429:
            wait = retry_after_seconds(headers) or 1
            return cls(
                f"The model's endpoint is rate-limiting us. Try again in {wait} seconds.",
                status=429,
                retry_after=wait,
            )
        if status_code in (400, 413, 422):
            message = f"The model's endpoint rejected the request (HTTP {status_code}){because}"
            return cls(message, status=status_code, **keep)
        if status_code < 500:
            return cls(f"The model's endpoint refused the request (HTTP {status_code}){because}")
        return cls(
            f"The model's endpoint failed (HTTP {status_code}){because} Try again shortly.",
            status=status_code if status_code in (503, 504) else 502,
            retry_after=retry_after_seconds(headers) if status_code == 503 else None,
        )


def retry_after_seconds(headers: Mapping[str, str]) -> int | None:
    """Return the upstream's Retry-After as whole seconds, when it gave one in seconds."""
    try:
        return max(1, math.ceil(float(headers.get("retry-after", ""))))
    except ValueError:
        return None


def upstream_reason(body: object, *, limit: int = 300) -> str:
    """Return the reason an upstream gave in an error body: OpenAI's error message, a web
    page's title, or the start of its text."""
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or body.get("error")
        return upstream_reason(message, limit=limit) if message else ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    if title := _HTML_TITLE.search(body):
        body = title.group(1)
    elif "<" in body and ">" in body:
        body = _HTML_TAG.sub(" ", body)
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")
