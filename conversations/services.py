"""Writes: starting a turn before the model is called, and saving it when its stream ends."""

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations import providers
from conversations.exceptions import ConversationNotFound, DuplicateRequest, InvalidChatRequest
from conversations.models import Conversation, Message
from conversations.selectors import model_history
from conversations.turns import FinishedTurn, StartedTurn

logger = logging.getLogger(__name__)

TITLE_LENGTH = 60


def title_from_message(content: str) -> str:
    """Make a conversation title from its first message: one line, cut at a word."""
    line = " ".join(content.split())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[:TITLE_LENGTH].rsplit(" ", 1)[0] or line[:TITLE_LENGTH]
    return cut + "…"


def clean_message(content: object) -> str:
    """Return the message text, or raise InvalidChatRequest saying what is wrong with it."""
    if not isinstance(content, str):
        raise InvalidChatRequest("The message must be text.", field="message")
    if not content.strip():
        raise InvalidChatRequest("The message is empty.", field="message")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise InvalidChatRequest(
            f"The message is too long: {len(content)} characters, at most {limit}.",
            field="message",
        )
    return content


def turn_start(
    *,
    user: AbstractBaseUser,
    conversation_id: int | None,
    model_key: str,
    content: object,
    request_id: str,
) -> StartedTurn:
    """Save the user's message and an empty answer, before the model is called.

    The user's words are in the database before anything can go wrong upstream. Raises a
    ChatError subclass, writing nothing, when the request is invalid.
    """
    text = clean_message(content)
    model = providers.get_model(model_key)
    try:
        with transaction.atomic():
            conversation = _conversation_for_turn(user, conversation_id, model.key, text)
            common = {"conversation": conversation, "user": user, "request_id": request_id}
            user_message = Message.objects.create(
                role=Message.Role.USER, content=text, status=Message.Status.COMPLETED, **common
            )
            answer = Message.objects.create(
                role=Message.Role.ASSISTANT,
                status=Message.Status.STREAMING,
                model=model.key,
                **common,
            )
            history = model_history(conversation=conversation, limit=settings.CHAT_HISTORY_MESSAGES)
    except IntegrityError:
        raise DuplicateRequest(f"Request ID {request_id!r} was already used.") from None
    return StartedTurn(
        request_id=request_id,
        user_id=user.pk,
        conversation_id=conversation.pk,
        conversation_title=conversation.title,
        user_message_id=user_message.pk,
        assistant_message_id=answer.pk,
        model=model,
        history=history,
    )


def _conversation_for_turn(
    user: AbstractBaseUser, conversation_id: int | None, model_key: str, text: str
) -> Conversation:
    if conversation_id is None:
        return Conversation.objects.create(
            owner=user, title=title_from_message(text), model=model_key
        )
    conversation = (
        Conversation.objects.select_for_update().filter(owner=user, pk=conversation_id).first()
    )
    if conversation is None:
        raise ConversationNotFound("No such conversation.", field="conversation")
    conversation.model = model_key
    conversation.save(update_fields=["model", "updated_at"])
    return conversation


def save_finished_turn(turn: FinishedTurn) -> None:
    """Save the answer of a finished turn; the default, always-first post-stream hook.

    Idempotent: only an answer still marked streaming is written, so a second call for the
    same request ID (a retried hook, a late generator finaliser) changes nothing.
    """
    updated = Message.objects.filter(
        pk=turn.assistant_message_id, status=Message.Status.STREAMING
    ).update(
        status=turn.status,
        content=turn.content,
        reasoning=turn.reasoning,
        finish_reason=turn.finish_reason,
        upstream_id=turn.upstream_id,
        prompt_tokens=turn.prompt_tokens,
        completion_tokens=turn.completion_tokens,
        usage_reported=turn.usage_reported,
        time_to_first_token_ms=turn.time_to_first_token_ms,
        duration_ms=turn.duration_ms,
        error=turn.error,
    )
    if updated:
        Conversation.objects.filter(pk=turn.conversation_id).update(updated_at=timezone.now())
    else:
        logger.warning("Turn %s was already saved; not saving it again", turn.request_id)


INTERRUPTED_ERROR = "The server stopped while this answer was streaming."


def turns_close_interrupted(*, started_before: datetime) -> int:
    """Mark answers still streaming since before `started_before` as failed; return how many."""
    return Message.objects.filter(
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        created_at__lt=started_before,
    ).update(status=Message.Status.FAILED, error=INTERRUPTED_ERROR)
