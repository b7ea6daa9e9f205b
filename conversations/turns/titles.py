"""Generated titles (CHAT_GENERATED_TITLES): after a new web chat's first answer, its own
model writes a short title for it, in place of the first message cut off.

The call is kept like every model call, as a message of the conversation with its request
ID, usage and timing (purpose "title", never part of the thread), and counted against no
user limit: it is not admitted, leases no stream, and charges no daily quota. It runs on
its own after the turn is saved, so the user's answer never waits for it. A title the user
set meanwhile is never overwritten, and a failed call leaves the first-message title.
"""

import asyncio
import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import providers
from conversations.exceptions import ProviderError
from conversations.executors import in_post_stream_thread
from conversations.models import Conversation, Message
from conversations.records import FinishedTurn
from conversations.services import title_from_message

logger = logging.getLogger(__name__)

TITLE_INSTRUCTION = (
    "Write a title for this conversation: at most six words, in the language of the "
    "conversation. Reply with the title only, without quotes or a final full stop."
)
# How much of the first answer the model is shown: a title needs the gist, not all of it.
ANSWER_CHARS = 2000
TITLE_MAX_TOKENS = 30
TITLE_TIMEOUT_SECONDS = 30
# Straight and curly quotes, which models like to put around a title.
QUOTES = "\"'\u201c\u201d\u2018\u2019"

_running: set[asyncio.Task] = set()


async def title_after_first_answer(turn: FinishedTurn) -> None:
    """Start writing a title when this turn is a new web chat's first completed answer."""
    if not settings.CHAT_GENERATED_TITLES or turn.status != Message.Status.COMPLETED:
        return
    task = asyncio.create_task(_write_title(turn))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _write_title(turn: FinishedTurn) -> None:
    try:
        ask = await in_post_stream_thread(title_question, turn)
        if ask is None:
            return
        started = time.monotonic()
        title, usage, upstream_id = await asyncio.wait_for(
            _ask_model(turn, ask), TITLE_TIMEOUT_SECONDS
        )
        duration_ms = round((time.monotonic() - started) * 1000)
        await in_post_stream_thread(save_title, turn, ask, title, usage, upstream_id, duration_ms)
    except (ProviderError, TimeoutError) as exc:
        logger.warning("No title was generated for request %s: %s", turn.request_id, exc)
    except Exception:
        logger.exception("Generating a title failed for request %s", turn.request_id)


def title_question(turn: FinishedTurn) -> list[dict[str, str]] | None:
    """The messages that ask for the title, or None when this turn needs none: not a web
    chat, not its first answer, or a title the user chose."""
    conversation = Conversation.objects.filter(
        pk=turn.conversation_id, source=Conversation.Source.WEB
    ).first()
    if conversation is None:
        return None
    answers = conversation.messages.filter(is_answer=True, purpose=Message.Purpose.CHAT)
    if answers.count() != 1:
        return None
    question = Message.objects.filter(pk=turn.user_message_id).first()
    if question is None or conversation.title != title_from_message(question.content):
        return None
    return [
        {"role": "system", "content": TITLE_INSTRUCTION},
        {"role": "user", "content": question.content},
        {"role": "assistant", "content": turn.content[:ANSWER_CHARS]},
        {"role": "user", "content": "Title for the conversation above?"},
    ]


async def _ask_model(
    turn: FinishedTurn, messages: list[dict[str, str]]
) -> tuple[str, tuple[int | None, int | None], str]:
    model = providers.get_model(turn.model_key)
    client = providers.client_for(model.endpoint)
    parts: list[str] = []
    usage: tuple[int | None, int | None] = (None, None)
    upstream_id = ""
    chunks = client.stream_chat(
        model=model.upstream_id,
        messages=messages,
        request_id=title_request_id(turn),
        max_tokens=TITLE_MAX_TOKENS,
    )
    async for chunk in chunks:
        parts.append(chunk.content)
        upstream_id = upstream_id or chunk.response_id
        if chunk.usage is not None:
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
    return "".join(parts), usage, upstream_id


def title_request_id(turn: FinishedTurn) -> str:
    return f"{turn.request_id}-title"


def clean_title(text: str) -> str:
    """The model's reply as a title: its first line, without quotes, a label or a full
    stop, cut at a word like a first-message title."""
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = line.strip().strip(QUOTES + "*#`").strip()
    if line.lower().startswith("title:"):
        line = line[len("title:") :].strip(QUOTES + "*#` ")
    return title_from_message(line.rstrip("."))


def save_title(
    turn: FinishedTurn,
    messages: list[dict[str, str]],
    reply: str,
    usage: tuple[int | None, int | None],
    upstream_id: str,
    duration_ms: int,
) -> str:
    """Keep the call as a message of the conversation and, unless the user renamed it
    meanwhile, make its reply the title. Return the title now in place."""
    title = clean_title(reply)
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=turn.conversation_id)
        Message.objects.create(
            conversation=conversation,
            user_id=turn.user_id,
            role=Message.Role.ASSISTANT,
            purpose=Message.Purpose.TITLE,
            is_answer=True,
            content=reply,
            model=turn.model_key,
            request_id=title_request_id(turn),
            upstream_id=upstream_id,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            usage_reported=usage[1] is not None,
            duration_ms=duration_ms,
            system_prompt=messages[0]["content"],
            # Never part of the thread the user is shown, nor of the model's context.
            superseded_at=timezone.now(),
        )
        question = Message.objects.filter(pk=turn.user_message_id).first()
        untouched = question is not None and conversation.title == title_from_message(
            question.content
        )
        if title and untouched:
            # Not activity: the conversation keeps its place in the list.
            Conversation.objects.filter(pk=conversation.pk).update(title=title)
            return title
        return conversation.title
