"""Reads of a user's conversations. Every query is scoped to its owner."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery

from conversations import history, providers
from conversations.exceptions import ConversationNotFound, TurnNotFound
from conversations.models import Conversation, Message
from conversations.search import TEXT_SEARCH_CONFIG, message_text_vector


def conversation_list(
    *, user: AbstractBaseUser, source: str | None = None
) -> QuerySet[Conversation]:
    """Return the user's conversations, most recently active first; only those from
    `source` (web or API) when it is given."""
    conversations = Conversation.objects.filter(owner=user)
    if source is not None:
        conversations = conversations.filter(source=source)
    return conversations.order_by("-updated_at", "-pk")


def conversation_page(
    *,
    user: AbstractBaseUser,
    limit: int,
    source: str | None = None,
    query: str = "",
    after: history.Cursor | None = None,
    offset: int = 0,
) -> tuple[list[Conversation], history.Cursor | None]:
    """Return a page of the user's conversations (annotated as by with_streaming_answer),
    most recently active first, and the cursor of the next page (None on the last one).

    `query` keeps those matching it (see conversations_matching); `after` continues from an
    earlier page's cursor, `offset` skips rows instead (the older way, kept for API clients).
    """
    conversations = conversation_list(user=user, source=source)
    if query.strip():
        conversations = conversations_matching(conversations, user=user, query=query)
    if after is not None:
        # The first condition lets the (owner, source, -updated_at) index find the start.
        conversations = conversations.filter(updated_at__lte=after.updated_at).filter(
            Q(updated_at__lt=after.updated_at) | Q(pk__lt=after.pk)
        )
    rows = list(with_streaming_answer(conversations)[offset : offset + limit + 1])
    page = rows[:limit]
    more = len(rows) > limit
    return page, history.Cursor(page[-1].updated_at, page[-1].pk) if more else None


def conversations_matching(
    conversations: QuerySet[Conversation], *, user: AbstractBaseUser, query: str
) -> QuerySet[Conversation]:
    """Keep the conversations whose title, or one of whose messages, has every word of
    `query` (each as the start of a word). Superseded messages are not searched.

    PostgreSQL searches with full-text queries on the GIN indexes of migrations 0004
    (messages) and 0010 (titles); other databases with a plain case-insensitive match.
    """
    terms = history.search_terms(query)
    if not terms:
        return conversations.none()
    owned = Conversation.objects.filter(owner=user)
    messages = Message.objects.filter(user=user, superseded_at__isnull=True)
    if connection.vendor == "postgresql":
        tsquery = SearchQuery(
            history.prefix_tsquery(terms), config=TEXT_SEARCH_CONFIG, search_type="raw"
        )
        owned = owned.annotate(text=history.conversation_title_vector()).filter(text=tsquery)
        messages = messages.annotate(text=message_text_vector()).filter(text=tsquery)
    else:
        for term in terms:
            owned = owned.filter(title__icontains=term)
            messages = messages.filter(content__icontains=term)
    return conversations.filter(
        Q(pk__in=owned.values("pk")) | Q(pk__in=messages.values("conversation_id"))
    )


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


def conversation_context_tokens(*, user: AbstractBaseUser, conversation_id: int) -> int:
    """Estimate the tokens a conversation's history adds to its next prompt: what its last
    answer on the thread shown cost (its prompt and its answer), 0 for none or another
    user's conversation."""
    last = (
        Message.objects.filter(
            conversation_id=conversation_id,
            conversation__owner=user,
            is_answer=True,
            superseded_at__isnull=True,
        )
        .order_by("-pk")
        .values_list("prompt_tokens", "completion_tokens")
        .first()
    )
    return sum(count or 0 for count in last) if last else 0


def conversation_messages(*, conversation: Conversation) -> QuerySet[Message]:
    """Return the conversation's thread as the user sees it: superseded messages left out."""
    return conversation.messages.filter(superseded_at__isnull=True).order_by("pk")


def last_shown_message(*, conversation: Conversation) -> Message | None:
    """The thread's last message as the user is shown it: what a new question follows."""
    return conversation_messages(conversation=conversation).order_by("-pk").first()


@dataclass(frozen=True)
class TreeNode:
    pk: int
    parent_id: int | None
    role: str
    superseded_at: datetime | None


@dataclass(frozen=True)
class Versions:
    """Where a message stands among its versions (the siblings sharing its parent and role):
    `number` of `count`, and the sibling to show for the previous and next buttons."""

    number: int
    count: int
    previous_id: int | None
    next_id: int | None


class MessageTree:
    """A conversation's messages as the tree their parents make: versions and branches."""

    def __init__(self, nodes: list[TreeNode]) -> None:
        self.messages = {node.pk: node for node in nodes}
        self.children: dict[int | None, list[TreeNode]] = defaultdict(list)
        for node in sorted(nodes, key=lambda n: n.pk):
            self.children[node.parent_id].append(node)

    def versions(self, pk: int) -> Versions:
        node = self.messages[pk]
        siblings = [n.pk for n in self.children[node.parent_id] if n.role == node.role]
        i = siblings.index(pk)
        return Versions(
            number=i + 1,
            count=len(siblings),
            previous_id=siblings[i - 1] if i > 0 else None,
            next_id=siblings[i + 1] if i + 1 < len(siblings) else None,
        )

    def path_to(self, pk: int) -> list[int]:
        """The messages from the root down to this one, by parents."""
        up = []
        node: TreeNode | None = self.messages[pk]
        while node is not None:
            up.append(node.pk)
            node = self.messages.get(node.parent_id) if node.parent_id is not None else None
        return list(reversed(up))

    def other_versions(self, pk: int) -> Versions | None:
        """Where the message stands among its versions, or None when it has no other (or is
        no part of the thread, as a generated title is not)."""
        if pk not in self.messages:
            return None
        versions = self.versions(pk)
        return versions if versions.count > 1 else None

    def branch_through(self, pk: int) -> list[int]:
        """The messages from the root to a leaf through this one: up by parents; down, at
        each step the child shown now, or else the one shown most recently."""
        branch = self.path_to(pk)
        children = self.children.get(pk)
        while children:
            chosen = max(children, key=_last_shown_first)
            branch.append(chosen.pk)
            children = self.children.get(chosen.pk)
        return branch


def _last_shown_first(node: TreeNode) -> tuple[bool, float, int]:
    hidden_at = node.superseded_at.timestamp() if node.superseded_at else 0.0
    return (node.superseded_at is None, hidden_at, node.pk)


def message_tree(*, conversation: Conversation) -> MessageTree:
    """The conversation's thread messages as a tree (a generated title's call is none)."""
    rows = conversation.messages.filter(purpose=Message.Purpose.CHAT).values_list(
        "pk", "parent_id", "role", "superseded_at"
    )
    return MessageTree([TreeNode(*row) for row in rows])


def conversation_thread(*, conversation: Conversation) -> list[Message]:
    """The thread as the chat page shows it: each message with `versions` (a Versions, or
    None when it has no other version), `model_label`, and `show_model` (True on answers
    when the thread has answers from more than one model)."""
    labels = {model.key: model.label for model in providers.model_options()}
    messages = list(conversation_messages(conversation=conversation))
    tree = message_tree(conversation=conversation)
    models = {m.model for m in messages if m.role == Message.Role.ASSISTANT and m.model}
    for message in messages:
        message.versions = tree.other_versions(message.pk)
        message.show_model = len(models) > 1 and message.role == Message.Role.ASSISTANT
        message.model_label = labels.get(message.model, message.model)
    return messages


def last_user_message(*, conversation: Conversation) -> Message | None:
    return (
        conversation_messages(conversation=conversation)
        .filter(role=Message.Role.USER)
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
