"""A turn's events, typed: what the runner publishes and every reader and encoder receives.

A turn publishes `Start`, then one `Reasoning` or `Delta` per piece of the model's answer,
then one final event: `Done` (completed or stopped) or `Failed` (its wire name is `error`).
Each has its id (1, 2, 3… in the turn's order; the SSE `id:`), its name (the SSE `event:`)
and its data (the JSON a client reads). The event log stores the name and the data;
`decode` makes the same classes again, and `replay` makes them from a saved answer whose log
has expired. Encoders match on the class (conversations.turns.encoders).
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from conversations.exceptions import ProviderError
from conversations.records import StartedTurn
from conversations.turns.eventlog import EventSpec, LoggedEvent
from conversations.usage import TokenUsage


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnEvent:
    """One event of a turn; `final` marks the last (Done and Failed), after which readers
    stop. A subclass names its event and builds its data."""

    # None only for the error that ends a reader whose log failed it: nothing to resume from.
    id: int | None = 0
    final: bool = False
    name: ClassVar[str]

    @property
    def data(self) -> dict[str, Any]:
        raise NotImplementedError

    def spec(self) -> EventSpec:
        """The event as the log stores it: its name and its data."""
        return self.name, self.data


@dataclass(frozen=True, slots=True, kw_only=True)
class Start(TurnEvent):
    """The turn is saved and running: the ids a client needs to follow and stop it."""

    name: ClassVar[str] = "start"
    request_id: str = ""
    conversation: int | None = None
    title: str = ""
    user_message: int | None = None
    assistant_message: int | None = None
    model: str = ""
    replaces: tuple[int, ...] = ()

    @classmethod
    def of(cls, turn: StartedTurn) -> "Start":
        return cls(
            conversation=turn.conversation_id,
            title=turn.conversation_title,
            user_message=turn.user_message_id,
            assistant_message=turn.assistant_message_id,
            request_id=turn.request_id,
            model=turn.model.key,
            replaces=turn.replaces,
        )

    @property
    def data(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "title": self.title,
            "user_message": self.user_message,
            "assistant_message": self.assistant_message,
            "request_id": self.request_id,
            "model": self.model,
            "replaces": list(self.replaces),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Reasoning(TurnEvent):
    """A piece of the model's reasoning (its thinking), before or between its text."""

    name: ClassVar[str] = "reasoning"
    content: str

    @property
    def data(self) -> dict[str, Any]:
        return {"content": self.content}


@dataclass(frozen=True, slots=True, kw_only=True)
class Delta(TurnEvent):
    """A piece of the answer's text."""

    name: ClassVar[str] = "delta"
    content: str

    @property
    def data(self) -> dict[str, Any]:
        return {"content": self.content}


@dataclass(frozen=True, slots=True, kw_only=True)
class Done(TurnEvent):
    """The turn ended with an answer (completed, or stopped) and was recorded."""

    name: ClassVar[str] = "done"
    final: bool = True
    status: str
    finish_reason: str = ""
    usage: TokenUsage = field(default_factory=lambda: TokenUsage(0, 0, reported=False))
    # Where the turn was recorded: "saved", or "spooled" until the database is back
    # (conversations.turns.saving); None where nobody knows (a saved answer replayed).
    record: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "finish_reason": self.finish_reason,
            "usage": self.usage.as_json(),
            "record": self.record,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed(TurnEvent):
    """The turn failed (the model's fault), was interrupted (the server's), or its reader
    lost the log. param, code and http_status let /v1 answer in OpenAI's error shape."""

    name: ClassVar[str] = "error"
    final: bool = True
    status: str
    message: str
    param: str | None = None
    code: str | None = None
    http_status: int | None = None
    record: str | None = None

    @classmethod
    def of(cls, failure: ProviderError, *, status: str, record: str | None = None) -> "Failed":
        return cls(
            status=status,
            message=failure.message,
            param=failure.param,
            code=failure.code,
            http_status=failure.status,
            record=record,
        )

    @property
    def data(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "param": self.param,
            "code": self.code,
            "http_status": self.http_status,
            "record": self.record,
        }


def decode(logged: LoggedEvent) -> TurnEvent:
    """The typed event an event-log entry holds."""
    data, where = logged.data, {"id": logged.id, "final": logged.final}
    match logged.name:
        case "delta":
            return Delta(**where, content=data["content"])
        case "reasoning":
            return Reasoning(**where, content=data["content"])
        case "start":
            return Start(**where, **(data | {"replaces": tuple(data.get("replaces") or ())}))
        case "done":
            return Done(
                **where,
                status=data["status"],
                finish_reason=data.get("finish_reason") or "",
                usage=TokenUsage.from_json(data.get("usage") or {}),
                record=data.get("record"),
            )
        case "error":
            return Failed(**where, **data)
    raise ValueError(f"Unknown turn event {logged.name!r}")


def ending_of(answer: Any, *, id: int = 0) -> Done | Failed:
    """The final event a finished answer's row stands for (its log having expired)."""
    if answer.status in ("completed", "stopped"):
        return Done(
            id=id,
            status=answer.status,
            finish_reason=answer.finish_reason,
            usage=TokenUsage.of_message(answer),
        )
    return Failed(id=id, status=answer.status, message=answer.error)


def replay(answer: Any) -> list[TurnEvent]:
    """A finished answer's row as its turn's events: start, its reasoning and its text in
    one event each, then its end."""
    events: list[TurnEvent] = [
        Start(
            id=1,
            request_id=answer.request_id,
            conversation=answer.conversation_id,
            user_message=answer.parent_id,
            assistant_message=answer.pk,
            model=answer.model,
        )
    ]
    if answer.reasoning:
        events.append(Reasoning(id=len(events) + 1, content=answer.reasoning))
    if answer.content:
        events.append(Delta(id=len(events) + 1, content=answer.content))
    return [*events, ending_of(answer, id=len(events) + 1)]
