"""Writes: starting a turn before the model is called, and saving it when its stream ends."""

import itertools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversations import pg_saves, providers, selectors, threads
from conversations.exceptions import (
    ConversationNotFound,
    DuplicateRequest,
    InvalidChatRequest,
    StaleConversation,
)
from conversations.models import Conversation, DailyUsage, Message
from conversations.records import FinishedTurn, StartedTurn
from conversations.selectors import model_history
from conversations.validation import clean_text

logger = logging.getLogger(__name__)

TITLE_LENGTH = 60

STALE_MESSAGE = (
    "This conversation changed since this page showed it (in another tab?). "
    "Reload the page to see it."
)


def title_from_message(content: str) -> str:
    """Make a conversation title from its first message: one line, cut at a word."""
    line = " ".join(content.split())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[:TITLE_LENGTH].rsplit(" ", 1)[0] or line[:TITLE_LENGTH]
    return cut + "…"


def clean_message(content: object) -> str:
    """Return the message text, or raise InvalidChatRequest saying what is wrong with it."""
    return clean_text(
        content, field="message", max_length=settings.CHAT_MAX_MESSAGE_CHARS, label="The message"
    )


def turn_start(
    *,
    user: AbstractBaseUser,
    conversation_id: int | None,
    model_key: str,
    content: object,
    request_id: str,
    message_id: int | None = None,
) -> StartedTurn:
    """Save the user's message and an empty answer, before the model is called.

    The user's words are in the database before anything can go wrong upstream. Raises a
    ChatError subclass, writing nothing, when the request is invalid. `message_id`, when
    given, is the last message the client shows: a thread changed since (another version
    shown in another tab) raises StaleConversation rather than continue a branch the user
    does not see.
    """
    text = clean_message(content)
    model = providers.get_model(model_key)
    with _one_answer_per_request(request_id), transaction.atomic():
        conversation = _conversation_for_turn(user, conversation_id, model.key, text)
        # A new question follows the thread as the user is shown it, whichever versions.
        parent = None
        if conversation_id is not None:
            parent = selectors.last_shown_message(conversation=conversation)
            if message_id is not None and (parent is None or parent.pk != message_id):
                raise StaleConversation(STALE_MESSAGE, field="message_id")
        question = _save_question(conversation, text, request_id, parent=parent)
        history = model_history(conversation=conversation, limit=settings.CHAT_HISTORY_MESSAGES)
        return _start_answer(conversation, question, model, request_id, history)


def prompt_turn_start(
    *,
    user: AbstractBaseUser,
    model_key: str,
    messages: list[dict[str, str]],
    request_id: str,
) -> StartedTurn:
    """Save an API call's prompt and an empty answer, in the API conversation it continues.

    `messages` are already validated ({"role", "content"} with text content); they go to the
    model exactly as given. When they begin with a thread of one of the user's API
    conversations (see conversations.threads), only the messages after it are saved there,
    following the message that ends it: the thread grows, or, from an earlier message (the
    same history sent again, or a later message changed), branches, the branch it leaves
    kept as a version. Otherwise they all start a new conversation.
    """
    model = providers.get_model(model_key)
    hashes = threads.prefix_hashes(messages)
    with _one_answer_per_request(request_id), transaction.atomic():
        conversation, follows, known = _api_thread(user, hashes, model.key, messages)
        new_messages = [
            Message(
                conversation=conversation,
                user=user,
                request_id=request_id,
                role=m["role"],
                content=m["content"],
                thread_hash=hashes[known + i],
            )
            for i, m in enumerate(messages[known:])
        ]
        answer = _answer_placeholder(conversation, model, request_id)
        rows = [*new_messages, answer]
        rows[0].parent = follows
        # The new prompt messages and the answer's placeholder: one INSERT, then each one's
        # parent, the row before it (a row's parent must be saved first).
        Message.objects.bulk_create(rows)
        for before, row in itertools.pairwise(rows):
            row.parent = before
        if len(rows) > 1:
            Message.objects.bulk_update(rows[1:], ["parent"])
        # The prompt's last message: the last one sent, saved now or before (a retry).
        last_prompt_message = new_messages[-1] if new_messages else follows
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
        return _started(
            conversation,
            last_prompt_message,
            answer,
            model,
            messages,
            prompt_hash=hashes[-1],
            prefill=prefill,
            before_prefill=hashes[-2] if prefill is not None and len(hashes) > 1 else "",
        )


def _api_thread(
    user: AbstractBaseUser, hashes: list[str], model_key: str, messages: list[dict[str, str]]
) -> tuple[Conversation, Message | None, int]:
    """Return the API conversation these messages continue, locked; the message they follow
    there (None in a new conversation); and how many of them it holds already (0: new)."""
    found = _thread_point(user, hashes, messages)
    if found is None:
        first_user = next((m["content"] for m in messages if m["role"] == "user"), "")
        conversation = Conversation.objects.create(
            owner=user,
            title=title_from_message(first_user or messages[0]["content"]),
            model=model_key,
            source=Conversation.Source.API,
        )
        return conversation, None, 0
    follows, position = found
    conversation = _locked_conversation(user, follows.conversation_id, model_key)
    _show_branch_to(conversation, follows)
    return conversation, follows, position + 1


def _thread_point(
    user: AbstractBaseUser, hashes: list[str], messages: list[dict[str, str]]
) -> tuple[Message, int] | None:
    """The saved message that ends the longest prefix of `messages` a call may continue
    from (see conversations.threads), and its position in them; the newest on a tie.

    A prefix may be continued once it reaches an assistant message (threads.first_
    continuable). The whole history, sent again when every answer to it failed or stopped, is
    a retry in its conversation. Both are asked of the database, so that the work does not
    grow with how often the same history was sent (each such call saves one more row with
    its hash: a batch of calls asking the same single question, say)."""
    position = {digest: i for i, digest in enumerate(hashes)}
    first = threads.first_continuable(messages)
    continuable = hashes[first:] if first is not None else []
    answers = Message.objects.filter(parent=OuterRef("pk"), is_answer=True)
    answered_only_badly = Exists(answers) & ~Exists(
        answers.filter(status__in=[Message.Status.COMPLETED, Message.Status.STREAMING])
    )
    whole = Q(thread_hash=hashes[-1]) | Q(merged_thread_hash=hashes[-1])
    followed = Message.objects.filter(
        parent=OuterRef("pk"), purpose=Message.Purpose.CHAT, superseded_at__isnull=True
    )
    candidates = (
        Message.objects.filter(user=user, conversation__source=Conversation.Source.API)
        .filter(
            Q(thread_hash__in=continuable)
            | Q(merged_thread_hash__in=continuable)
            | (whole & answered_only_badly)
        )
        .only("pk", "conversation_id", "thread_hash", "merged_thread_hash", "superseded_at")
        # Whether the thread shown goes on after it (if not, it is the thread's end).
        .annotate(followed=Exists(followed))
    )
    ranked = [
        (max(position.get(m.thread_hash, -1), position.get(m.merged_thread_hash, -1)), m.pk, m)
        for m in candidates
    ]
    if not ranked:
        return None
    at, _, message = max(ranked, key=lambda r: (r[0], r[1]))
    return message, at


def _show_branch_to(conversation: Conversation, message: Message) -> None:
    """Make `message` the end of the thread shown, ready for what follows it: what followed
    it before, and any other branch shown, becomes a version the thread no longer shows."""
    if message.superseded_at is None and not message.followed:
        return  # the thread grows from its end: the usual case
    tree = selectors.message_tree(conversation=conversation)
    _show_only(tree, tree.path_to(message.pk))


def _show_only(tree: selectors.MessageTree, branch: Iterable[int]) -> None:
    """Show these messages of the tree and hide every other one shown (kept as versions)."""
    branch = set(branch)
    shown = {pk for pk, node in tree.messages.items() if node.superseded_at is None}
    Message.objects.filter(pk__in=shown - branch).update(superseded_at=timezone.now())
    Message.objects.filter(pk__in=branch - shown).update(superseded_at=None)


def turn_regenerate(
    *,
    user: AbstractBaseUser,
    conversation_id: int,
    model_key: str,
    request_id: str,
    message_id: int | None = None,
) -> StartedTurn:
    """Answer a question of the thread again: a new version of its answer.

    `message_id` names the answer to redo (or the question to answer again), anywhere in the
    thread as the user is shown it; without it, the last question's. The messages after that
    question leave the thread, kept as the earlier version. A message the user is no longer
    shown (replaced in another tab meanwhile) raises StaleConversation and writes nothing."""
    model = providers.get_model(model_key)
    with _one_answer_per_request(request_id), transaction.atomic():
        conversation = _locked_conversation(user, conversation_id, model.key)
        shown = selectors.conversation_messages(conversation=conversation)
        if message_id is None:
            question = _last_question(conversation, "There is no message to answer again.")
        else:
            question = _question_of(shown, _shown(shown, message_id))
        replaced = _supersede(shown.filter(pk__gt=question.pk))
        history = model_history(conversation=conversation, limit=settings.CHAT_HISTORY_MESSAGES)
        return _start_answer(conversation, question, model, request_id, history, replaced)


def turn_edit(
    *,
    user: AbstractBaseUser,
    conversation_id: int,
    model_key: str,
    content: object,
    request_id: str,
    message_id: int | None = None,
) -> StartedTurn:
    """Ask an edited question in place of one of the thread's: a new version of it, answered
    from the thread before it (the model never sees what followed the old version).

    `message_id` names the question, anywhere in the thread as the user is shown it; without
    it, the last one. The old version and everything after it leave the thread, kept."""
    text = clean_message(content)
    model = providers.get_model(model_key)
    with _one_answer_per_request(request_id), transaction.atomic():
        conversation = _locked_conversation(user, conversation_id, model.key)
        shown = selectors.conversation_messages(conversation=conversation)
        if message_id is None:
            question = _last_question(conversation, "There is no message to edit.")
        else:
            question = _shown(shown, message_id, role=Message.Role.USER)
        parent = _shown_before(shown, question)
        replaced = _supersede(shown.filter(pk__gte=question.pk))
        edited = _save_question(conversation, text, request_id, parent=parent)
        history = model_history(conversation=conversation, limit=settings.CHAT_HISTORY_MESSAGES)
        return _start_answer(conversation, edited, model, request_id, history, replaced)


def conversation_show_version(
    *, user: AbstractBaseUser, conversation_id: int, message_id: int
) -> Conversation:
    """Show the branch of the user's web chat that goes through this message (one of the
    versions "< 1/2 >" of a question or an answer): the thread, and so the model's next context,
    follow it. Below the message, each step takes the version the user was shown last."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .filter(owner=user, pk=conversation_id, source=Conversation.Source.WEB)
            .first()
        )
        if conversation is None:
            raise ConversationNotFound("No such conversation.", field="conversation")
        if selectors.streaming_request_id(conversation=conversation):
            raise StaleConversation(
                "An answer is still being written in this conversation; wait for it to end.",
                field="message_id",
            )
        tree = selectors.message_tree(conversation=conversation)
        if message_id not in tree.messages:
            raise InvalidChatRequest("No such message in this conversation.", field="message_id")
        _show_only(tree, tree.branch_through(message_id))
        return conversation


def _save_question(
    conversation: Conversation, text: str, request_id: str, *, parent: Message | None = None
) -> Message:
    return Message.objects.create(
        conversation=conversation,
        user_id=conversation.owner_id,
        request_id=request_id,
        role=Message.Role.USER,
        content=text,
        parent=parent,
    )


def _last_question(conversation: Conversation, missing: str) -> Message:
    question = selectors.last_user_message(conversation=conversation)
    if question is None:
        raise InvalidChatRequest(missing, field="conversation")
    return question


def _shown(shown: QuerySet[Message], message_id: int, *, role: str | None = None) -> Message:
    """The thread's message the client acted on; a message no longer shown (or never this
    conversation's, or of another role) means the client's page is stale."""
    found = shown.filter(pk=message_id)
    if role is not None:
        found = found.filter(role=role)
    message = found.first()
    if message is None:
        raise StaleConversation(STALE_MESSAGE, field="message_id")
    return message


def _question_of(shown: QuerySet[Message], message: Message) -> Message:
    """The question an answer of the shown thread answers (a question is its own)."""
    if message.role == Message.Role.USER:
        return message
    question = _shown_before(shown, message, role=Message.Role.USER)
    if question is None:
        raise InvalidChatRequest("There is no message to answer again.", field="message_id")
    return question


def _shown_before(
    shown: QuerySet[Message], message: Message, *, role: str | None = None
) -> Message | None:
    """The message of the shown thread just before this one (its parent in the tree), or
    the last one of `role` before it."""
    before = shown.filter(pk__lt=message.pk)
    if role is not None:
        before = before.filter(role=role)
    return before.order_by("-pk").first()


def _supersede(messages: QuerySet[Message]) -> tuple[int, ...]:
    """Hide these messages from the thread, keeping them as records; return their IDs."""
    ids = tuple(messages.values_list("pk", flat=True))
    Message.objects.filter(pk__in=ids).update(superseded_at=timezone.now())
    return ids


@contextmanager
def _one_answer_per_request(request_id: str) -> Iterator[None]:
    try:
        yield
    except IntegrityError:
        raise DuplicateRequest(f"Request ID {request_id!r} was already used.") from None


def _start_answer(
    conversation: Conversation,
    last_prompt_message: Message,
    model: providers.ModelOption,
    request_id: str,
    history: list[dict[str, str]],
    replaces: tuple[int, ...] = (),
    *,
    prompt_hash: str = "",
) -> StartedTurn:
    answer = _answer_placeholder(conversation, model, request_id)
    answer.parent = last_prompt_message
    # Web chats send the model's system prompt first; the answer records the one it was sent.
    answer.system_prompt = model.system_prompt
    answer.save(force_insert=True)
    return _started(
        conversation,
        last_prompt_message,
        answer,
        model,
        model.with_system_prompt(history),
        replaces,
        prompt_hash=prompt_hash,
    )


def _answer_placeholder(
    conversation: Conversation, model: providers.ModelOption, request_id: str
) -> Message:
    """The answer's row before the model says anything, unsaved: streaming, with a heartbeat."""
    return Message(
        conversation=conversation,
        user_id=conversation.owner_id,
        request_id=request_id,
        role=Message.Role.ASSISTANT,
        is_answer=True,
        status=Message.Status.STREAMING,
        model=model.key,
        heartbeat_at=timezone.now(),
    )


def _started(
    conversation: Conversation,
    last_prompt_message: Message,
    answer: Message,
    model: providers.ModelOption,
    history: list[dict[str, str]],
    replaces: tuple[int, ...] = (),
    *,
    prompt_hash: str = "",
    prefill: str | None = None,
    before_prefill: str = "",
) -> StartedTurn:
    return StartedTurn(
        request_id=answer.request_id,
        user_id=conversation.owner_id,
        conversation_id=conversation.pk,
        conversation_title=conversation.title,
        user_message_id=last_prompt_message.pk,
        assistant_message_id=answer.pk,
        model=model,
        history=history,
        replaces=replaces,
        prompt_hash=prompt_hash,
        prefill=prefill,
        before_prefill_hash=before_prefill,
    )


def _conversation_for_turn(
    user: AbstractBaseUser, conversation_id: int | None, model_key: str, text: str
) -> Conversation:
    if conversation_id is None:
        return Conversation.objects.create(
            owner=user, title=title_from_message(text), model=model_key
        )
    return _locked_conversation(user, conversation_id, model_key)


def _locked_conversation(
    user: AbstractBaseUser, conversation_id: int, model_key: str
) -> Conversation:
    """Lock the user's conversation for this turn and switch it to the turn's model."""
    conversation = (
        Conversation.objects.select_for_update().filter(owner=user, pk=conversation_id).first()
    )
    if conversation is None:
        raise ConversationNotFound("No such conversation.", field="conversation")
    conversation.model = model_key
    conversation.save(update_fields=["model", "updated_at"])
    return conversation


def conversation_rename(
    *, user: AbstractBaseUser, conversation_id: int, title: object
) -> Conversation:
    """Rename one of the user's conversations; another user's is not found."""
    limit = Conversation._meta.get_field("title").max_length
    title = " ".join(clean_text(title, field="title", max_length=limit, label="The title").split())
    conversation = selectors.conversation_get(user=user, conversation_id=conversation_id)
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_delete(*, user: AbstractBaseUser, conversation_id: int) -> None:
    """Delete one of the user's conversations with its messages; another user's is not found."""
    selectors.conversation_get(user=user, conversation_id=conversation_id).delete()


def save_finished_turn(turn: FinishedTurn) -> bool:
    """Save the answer of a finished turn and charge its tokens to the user's day; return
    whether it wrote anything. Raises when the database fails (see conversations.turns.saving).

    Exactly once, keyed by the answer: only an answer still streaming is written and charged,
    so a second call for the same turn (a spool replayed twice) changes nothing. An answer a
    sweep marked interrupted (its heartbeat went stale while the database was away) is
    corrected: the finished turn knows better, and only the difference is charged.
    """
    fields = {
        "status": turn.status,
        "content": turn.content,
        "reasoning": turn.reasoning,
        "finish_reason": turn.finish_reason,
        "upstream_id": turn.upstream_id,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "usage_reported": turn.usage_reported,
        "time_to_first_token_ms": turn.time_to_first_token_ms,
        "duration_ms": turn.duration_ms,
        "reasoning_ms": turn.reasoning_ms,
        "error": turn.error,
        "heartbeat_at": None,
    }
    if turn.prompt_hash:  # an API thread: a client may now continue it from this answer
        fields["thread_hash"] = threads.hash_after_answer(
            prompt_hash=turn.prompt_hash, status=turn.status, content=turn.content
        )
        if turn.prefill is not None:
            fields["merged_thread_hash"] = threads.hash_after_prefilled_answer(
                before_prefill=turn.before_prefill_hash,
                prefill=turn.prefill,
                status=turn.status,
                content=turn.content,
            )
    changes: dict[str, object] = {"updated_at": timezone.now()}
    if connection.vendor == "postgresql" and pg_saves.save_streaming_answer(
        answer_id=turn.assistant_message_id,
        fields=fields,
        conversation_id=turn.conversation_id,
        conversation_changes=changes,
        user_id=turn.user_id,
        tokens=turn_tokens(turn),
    ):
        return True
    with transaction.atomic():
        answers = Message.objects.filter(pk=turn.assistant_message_id)
        if answers.filter(status=Message.Status.STREAMING).update(**fields):
            charged_before, answers_before = 0, 0
        else:
            # A sweep's mark has no duration (a saved turn always has one).
            swept = (
                answers.select_for_update()
                .filter(status=Message.Status.INTERRUPTED, duration_ms=None)
                .first()
            )
            if swept is None:
                logger.info("Turn %s was already saved; not saving it again", turn.request_id)
                return False
            charged_before = (swept.prompt_tokens or 0) + (swept.completion_tokens or 0)
            answers_before = 1
            answers.update(**fields)
        Conversation.objects.filter(pk=turn.conversation_id).update(**changes)
        usage_charge(
            user_id=turn.user_id,
            tokens=max(0, turn_tokens(turn) - charged_before),
            answers=1 - answers_before,
        )
    return True


def turn_tokens(turn: FinishedTurn) -> int:
    return (turn.prompt_tokens or 0) + (turn.completion_tokens or 0)


def usage_charge(*, user_id: int, tokens: int, answers: int = 1) -> None:
    """Add one answer's tokens to the user's ledger for today."""
    row, _ = DailyUsage.objects.get_or_create(user_id=user_id, day=timezone.localdate())
    DailyUsage.objects.filter(pk=row.pk).update(
        tokens=F("tokens") + tokens, answers=F("answers") + answers
    )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A running answer as far as it got: written to its row while it streams."""

    assistant_message_id: int
    content: str
    reasoning: str
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_ms: int | None = None  # how long it has thought so far
    # The turn's last event whose text this holds: a page opened mid-answer follows on from
    # the next one.
    through_event: int | None = None


def turns_checkpoint(*, changed: list[Checkpoint], unchanged_ids: list[int]) -> None:
    """Write running answers' partial text and refresh every one's heartbeat: at most two
    statements for all of a process's running answers. Rows no longer streaming (saved
    meanwhile) are left alone."""
    now = timezone.now()
    streaming = Message.objects.filter(status=Message.Status.STREAMING)
    if changed and connection.vendor == "postgresql":
        pg_saves.checkpoint_streaming_answers([_checkpoint_row(c) for c in changed], now)
    elif changed:
        rows = [
            Message(
                pk=c.assistant_message_id,
                content=c.content,
                reasoning=c.reasoning,
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                reasoning_ms=c.reasoning_ms,
                checkpoint_event=c.through_event,
                heartbeat_at=now,
            )
            for c in changed
        ]
        fields = [
            "content",
            "reasoning",
            "prompt_tokens",
            "completion_tokens",
            "reasoning_ms",
            "checkpoint_event",
            "heartbeat_at",
        ]
        streaming.bulk_update(rows, fields, batch_size=500)
    if unchanged_ids:
        streaming.filter(pk__in=unchanged_ids).update(heartbeat_at=now)


_checkpoint_row = attrgetter(
    "assistant_message_id",
    "content",
    "reasoning",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_ms",
    "through_event",
)

INTERRUPTED_ERROR = "The server stopped while answering."


def turns_close_interrupted(
    *, stale_before: datetime, exclude_ids: Iterable[int] = ()
) -> list[Message]:
    """Mark answers still streaming whose heartbeat is older than `stale_before` as
    interrupted, keeping their checkpointed text and charging the tokens counted so far;
    return them. An answer with a fresh heartbeat is never touched, nor any in
    `exclude_ids` (the answers the calling process runs itself)."""
    stale = (
        Message.objects.filter(is_answer=True, status=Message.Status.STREAMING)
        .alias(last_sign=Coalesce("heartbeat_at", "created_at"))
        .filter(last_sign__lt=stale_before)
        .exclude(pk__in=list(exclude_ids))
    )
    closed = []
    for answer_id in stale.values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            answer = (
                Message.objects.select_for_update()
                .filter(pk=answer_id, status=Message.Status.STREAMING)
                .first()
            )
            if answer is None:
                continue  # saved meanwhile
            answer.status = Message.Status.INTERRUPTED
            answer.error = INTERRUPTED_ERROR
            answer.heartbeat_at = None
            answer.save(update_fields=["status", "error", "heartbeat_at"])
            tokens = (answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
            usage_charge(user_id=answer.user_id, tokens=tokens)
            closed.append(answer)
    return closed
