"""Export saved conversations for review, streamed in constant memory.

JSONL: one conversation a line, with all its messages (superseded ones too: they are
records). CSV: one message a row. Both read the database in batches of BATCH conversations
by primary key, and are async generators: under ASGI, Django would read a sync iterator to
the end before sending, which is exactly the memory this avoids.
"""

import csv
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.usage import TokenUsage

BATCH = 500

MESSAGE_FIELDS = (
    "id",
    "role",
    "content",
    "reasoning",
    "status",
    "finish_reason",
    "model",
    "request_id",
    "upstream_id",
    "prompt_tokens",
    "completion_tokens",
    "usage_reported",
    "time_to_first_token_ms",
    "duration_ms",
    "error",
    "superseded_at",
    "created_at",
)
CSV_HEADER = ("conversation_id", "conversation_title", "owner", "source", *MESSAGE_FIELDS)


Batch = list[tuple[Conversation, list[Message]]]


def _load_batch(conversation_ids: QuerySet, after_pk: int) -> Batch:
    # Messages are grouped by hand rather than prefetched: a prefetch links each message and
    # its conversation both ways, and such cycles are freed only by Python's occasional full
    # garbage collection, so memory would grow with the size of the export.
    conversations = list(
        Conversation.objects.filter(pk__in=conversation_ids, pk__gt=after_pk)
        .select_related("owner")
        .order_by("pk")[:BATCH]
    )
    messages: dict[int, list[Message]] = defaultdict(list)
    in_batch = Message.objects.filter(conversation__in=[c.pk for c in conversations])
    for message in in_batch.order_by("pk"):
        messages[message.conversation_id].append(message)
    return [(conversation, messages[conversation.pk]) for conversation in conversations]


async def conversation_batches(queryset: QuerySet[Conversation]) -> AsyncIterator[Batch]:
    """Yield the selected conversations with their messages, BATCH at a time."""
    # Only the IDs of the admin's (annotated, ordered) selection are used.
    ids = queryset.order_by().values("pk")
    after = 0
    while batch := await sync_to_async(_load_batch)(ids, after):
        yield batch
        after = batch[-1][0].pk


def message_record(message: Message) -> dict[str, Any]:
    record = {field: getattr(message, field) for field in MESSAGE_FIELDS}
    # The saved columns above, and the usage as every other surface reads it (an answer's
    # counts as integers, `reported` false where they are our estimate; None on a question).
    return record | {"usage": TokenUsage.json_of(message)}


def conversation_record(conversation: Conversation, messages: list[Message]) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "owner": {
            "id": conversation.owner_id,
            "username": conversation.owner.get_username(),
            "email": conversation.owner.email,
        },
        "model": conversation.model,
        "source": conversation.source,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "messages": [message_record(m) for m in messages],
    }


async def jsonl_lines(queryset: QuerySet[Conversation]) -> AsyncIterator[bytes]:
    async for batch in conversation_batches(queryset):
        yield b"".join(orjson.dumps(conversation_record(*pair)) + b"\n" for pair in batch)


class _Line:
    """A file-like object that hands back what csv.writer writes, instead of keeping it."""

    def write(self, value: str) -> str:
        return value


async def csv_rows(queryset: QuerySet[Conversation]) -> AsyncIterator[bytes]:
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_HEADER).encode()
    async for batch in conversation_batches(queryset):
        rows = []
        for conversation, messages in batch:
            owner = conversation.owner.get_username()
            for message in messages:
                values = [_csv_value(getattr(message, f)) for f in MESSAGE_FIELDS]
                row = [conversation.pk, conversation.title, owner, conversation.source, *values]
                rows.append(writer.writerow(row))
        yield "".join(rows).encode()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _attachment(body: AsyncIterator[bytes], content_type: str, ext: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{ext}"'
    return response


def conversations_jsonl_response(queryset: QuerySet[Conversation]) -> StreamingHttpResponse:
    return _attachment(jsonl_lines(queryset), "application/x-ndjson", "jsonl")


def messages_csv_response(queryset: QuerySet[Conversation]) -> StreamingHttpResponse:
    return _attachment(csv_rows(queryset), "text/csv; charset=utf-8", "csv")
