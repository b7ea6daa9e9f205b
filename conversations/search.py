"""Search saved conversations for review: titles, people, request IDs and message text.

Message text is searched only for reviewers allowed to read it (the admin decides): a match
would otherwise reveal words they may not see. Message matches are EXISTS subqueries, not
joins, so they never multiply the rows the list annotates. On PostgreSQL, message text is
searched with full-text search backed by the GIN index of migration 0004; elsewhere with a
plain case-insensitive match.
"""

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from conversations.models import Conversation, Message

# "simple": no stemming and no stop words, so any language and any word can be found.
TEXT_SEARCH_CONFIG = "simple"


def message_text_vector() -> SearchVector:
    """The expression the GIN index is built on; queries must use exactly this one."""
    return SearchVector("content", config=TEXT_SEARCH_CONFIG)


def messages_matching_text(term: str) -> QuerySet[Message]:
    if connection.vendor == "postgresql":
        query = SearchQuery(term, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        return Message.objects.annotate(text=message_text_vector()).filter(text=query)
    return Message.objects.filter(content__icontains=term)


def search_conversations(
    queryset: QuerySet[Conversation], term: str, *, message_text: bool
) -> tuple[QuerySet[Conversation], bool]:
    """Return the conversations matching `term`, and False: the result has no duplicates.

    Titles, owners' usernames and emails, and exact request and upstream IDs are always
    searched; message text only when `message_text` is True.
    """
    term = term.strip()
    if not term:
        return queryset, False
    in_conversation = Q(conversation=OuterRef("pk"))
    by_id = Message.objects.filter(in_conversation & (Q(request_id=term) | Q(upstream_id=term)))
    matches = (
        Q(title__icontains=term)
        | Q(owner__username__icontains=term)
        | Q(owner__email__icontains=term)
        | Exists(by_id)
    )
    if message_text:
        matches |= Exists(messages_matching_text(term).filter(in_conversation))
    return queryset.filter(matches), False
