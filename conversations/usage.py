"""An answer's token usage: one rule, and one serializer for every place it is shown.

The rule: an answer's usage is two whole numbers, its prompt's tokens and its completion's.
They are the model's own counts where it reported them (`reported`), and ours where it did
not: the prompt counted with conversations.turns.token_estimate, the completion as the
chunks of text received. Every answer is charged what its usage says, so a model that stays
silent about usage does not make answers free.

The same answer reads the same everywhere:
- the site's JSON (the live `done` event, the site API after a reload, the WebSocket, the
  admin's JSONL export): {"prompt_tokens", "completion_tokens", "reported"};
- OpenAI's shapes (/v1 chat completions and the Responses API): integers, as the SDKs'
  types require, with `"estimated": true` inside the object where the counts are ours (a
  field those types let through), and on a whole answer an `X-Usage-Estimated: true` header.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

# On a whole (non-streamed) OpenAI-shaped answer whose usage is our estimate, not the model's.
USAGE_ESTIMATED_HEADER = "X-Usage-Estimated"


class CountedAnswer(Protocol):
    """A saved answer's usage columns (conversations.models.Message)."""

    role: str
    prompt_tokens: int | None
    completion_tokens: int | None
    usage_reported: bool


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int
    reported: bool

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def of_message(cls, message: CountedAnswer) -> Self | None:
        """A saved message's usage; None for a question, which has none of its own."""
        if message.role != "assistant":
            return None
        # None only in an answer not yet checkpointed, or saved before counts were kept.
        return cls(
            message.prompt_tokens or 0, message.completion_tokens or 0, message.usage_reported
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Read the site's shape back (an event in the log); nulls, from events logged
        before estimates were sent, count as 0."""
        return cls(
            data.get("prompt_tokens") or 0,
            data.get("completion_tokens") or 0,
            bool(data.get("reported", True)),
        )

    @classmethod
    def json_of(cls, message: CountedAnswer) -> dict[str, Any] | None:
        """A saved message's usage in the site's shape; None for a question."""
        usage = cls.of_message(message)
        return usage.as_json() if usage else None

    def as_json(self) -> dict[str, Any]:
        """The site's shape: live, after a reload, on the WebSocket and in exports."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reported": self.reported,
        }

    def as_chat_completion(self) -> dict[str, Any]:
        """OpenAI's Chat Completions usage object."""
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        return self._marked(usage)

    def as_response(self) -> dict[str, Any]:
        """The Responses API's usage object."""
        usage: dict[str, Any] = {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }
        return self._marked(usage)

    def headers(self) -> dict[str, str]:
        """The header that tells a whole answer's reader its usage is our estimate."""
        return {} if self.reported else {USAGE_ESTIMATED_HEADER: "true"}

    def _marked(self, usage: dict[str, Any]) -> dict[str, Any]:
        if not self.reported:
            usage["estimated"] = True
        return usage
