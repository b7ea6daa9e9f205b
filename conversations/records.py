"""The two records that travel through the pipeline: a turn as it starts and as it ends."""

from dataclasses import dataclass

from conversations.providers import ModelOption
from conversations.usage import TokenUsage


@dataclass(frozen=True, slots=True)
class StartedTurn:
    """A turn whose user message and assistant placeholder are saved, ready to stream."""

    request_id: str
    user_id: int
    conversation_id: int
    conversation_title: str
    user_message_id: int
    assistant_message_id: int
    model: ModelOption
    history: list[dict[str, str]]
    # Messages this turn hid from the thread (a regenerated answer, an edited question).
    replaces: tuple[int, ...] = ()
    # API threads only: the hash of the prompt, which the answer extends (see threads.py);
    # and when the prompt ended with an assistant message (a prefill the model continues),
    # that message and the hash of the thread before it.
    prompt_hash: str = ""
    prefill: str | None = None
    before_prefill_hash: str = ""


@dataclass(frozen=True, slots=True)
class FinishedTurn:
    """Everything known about a turn when its stream ended, however it ended."""

    request_id: str
    user_id: int
    conversation_id: int
    user_message_id: int
    assistant_message_id: int
    model_key: str
    status: str  # a Message.Status value other than "streaming"
    content: str
    reasoning: str
    finish_reason: str
    upstream_id: str
    prompt_tokens: int | None
    completion_tokens: int | None
    usage_reported: bool
    time_to_first_token_ms: int | None
    duration_ms: int
    error: str
    prompt_hash: str = ""
    # From the first reasoning to the first text (or the end); None without reasoning.
    # Last, with a default: spooled turns written before it still load.
    reasoning_ms: int | None = None
    # As on StartedTurn (API threads: a prefill the answer continued); with defaults, after
    # the others, for the same reason.
    prefill: str | None = None
    before_prefill_hash: str = ""

    @property
    def usage(self) -> TokenUsage:
        """The usage as charged and saved (the rule: conversations.usage)."""
        return TokenUsage(self.prompt_tokens or 0, self.completion_tokens or 0, self.usage_reported)
