"""Reads of a user's conversations. Every query is scoped to its owner."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import OuterRef, QuerySet, Subquery

from conversations.exceptions import ConversationNotFound, TurnNotFound
from conversations.models import Conversation, Message

UNFINISHED_OR_FAILED = (
    Message.Status.STREAMING,
    Message.Status.STOPPED,
    Message.Status.FAILED,
    Message.Status.INTERRUPTED,
)


def conversation_list(
    *, user: AbstractBaseUser, source: str | None = None
) -> QuerySet[Conversation]:
    """Return the user's conversations, most recently active first; only those from
    `source` (web or API) when it is given."""
    conversations = Conversation.objects.filter(owner=user)
    if source is not None:
        conversations = conversations.filter(source=source)
    return conversations.order_by("-updated_at", "-pk")


def _streaming_answers() -> QuerySet[Message]:
    return Message.objects.filter(is_answer=True, status=Message.Status.STREAMING).order_by("-pk")


def with_streaming_answer(conversations: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """Annotate each conversation with the request ID of an answer still streaming, or None,
    so that a client can re-attach to it."""
    streaming = _streaming_answers().filter(conversation=OuterRef("pk"))
    return conversations.annotate(streaming_request_id=Subquery(streaming.values("request_id")[:1]))


def streaming_request_id(*, conversation: Conversation) -> str | None:
    """Return the request ID of the conversation's answer still streaming, or None."""
    streaming = _streaming_answers().filter(conversation=conversation)
    return streaming.values_list("request_id", flat=True).first()


def conversation_get(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """Return the user's conversation; another user's, or a missing one, is a 404."""
    try:
        return Conversation.objects.get(owner=user, pk=conversation_id)
    except Conversation.DoesNotExist:
        raise ConversationNotFound("No such conversation.", field="conversation") from None


def answer_for_request(*, user: AbstractBaseUser, request_id: str) -> Message:
    """Return the user's answer to the request; another user's, or none, is a 404."""
    answer = Message.objects.filter(user=user, request_id=request_id, is_answer=True).first()
    if answer is None:
        raise TurnNotFound("No such answer.", field="request_id")
    return answer


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    """Return the conversation's thread as the user sees it: superseded messages left out."""
    return conversation.messages.filter(superseded_at__isnull=True).order_by("pk")


def last_user_message(*, conversation: Conversation) -> Message | None:
    return (
        conversation_messages(conversation=conversation)
        .filter(role=Message.Role.USER)
        .order_by("-pk")
        .first()
    )


def last_prompt_message(*, conversation: Conversation) -> Message | None:
    """Return the last message a continuation of this API thread answers: the newest one
    that is not a failed or stopped answer."""
    return (
        conversation.messages.exclude(is_answer=True, status__in=UNFINISHED_OR_FAILED)
        .order_by("-pk")
        .first()
    )


def model_history(*, conversation: Conversation, limit: int) -> list[dict[str, str]]:
    """Return the last `limit` turns to send to the model, oldest first.

    Stopped and failed answers are included with whatever text they had, since the user saw
    it; empty ones are left out, because an empty assistant turn confuses most models.
    """
    rows = (
        conversation_messages(conversation=conversation)
        .exclude(role=Message.Role.ASSISTANT, content="")
        .order_by("-pk")
        .values_list("role", "content")[:limit]
    )
    return [{"role": role, "content": content} for role, content in reversed(rows)]
