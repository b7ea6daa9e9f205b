"""Errors of the chat pipeline, each with a message a person can read."""

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


class UnknownModel(ChatError):
    status = 400


class DuplicateRequest(ChatError):
    status = 409


class ProviderError(Exception):
    """The model's endpoint failed; the message is safe to show to the user."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    @classmethod
    def from_status(cls, status_code: int, headers: Mapping[str, str]) -> "ProviderError":
        """Explain an HTTP error status from the model's endpoint in plain words."""
        if status_code in (401, 403):
            message = (
                "The model's endpoint refused our credentials; "
                "an administrator must fix the API key."
            )
        elif status_code == 404:
            message = "The model's endpoint does not know this model."
        elif status_code == 429:
            retry_after = headers.get("retry-after")
            wait = f" Try again in {retry_after} seconds." if retry_after else " Try again shortly."
            message = "The model's endpoint is rate-limiting us." + wait
        elif status_code >= 500:
            message = f"The model's endpoint failed (HTTP {status_code}). Try again shortly."
        else:
            message = f"The model's endpoint rejected the request (HTTP {status_code})."
        return cls(message, status_code=status_code)
