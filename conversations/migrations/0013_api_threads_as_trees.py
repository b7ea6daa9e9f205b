"""API threads become trees like web chats: each message names its parent and keeps the
hash of the thread through it, so that a call sending a thread's history again (a
regenerate) or changing a later message branches the conversation instead of copying it."""

import hashlib

import orjson
from django.conf import settings
from django.db import migrations, models


def _extend(previous: str, role: str, content: str) -> str:
    # conversations.threads.extend_hash, frozen here as migrations must be.
    return hashlib.sha256(orjson.dumps([previous, role, content])).hexdigest()


def link_api_threads(apps, schema_editor):
    """Give the API conversations saved so far their parents and thread hashes, from the
    linear thread they were: each message follows the last one that joined the thread (a
    message the client sent, or a completed answer; a failed or stopped answer was retried,
    so what came after it follows its prompt)."""
    Message = apps.get_model("conversations", "Message")
    Conversation = apps.get_model("conversations", "Conversation")
    api = Conversation.objects.filter(source="api").values_list("pk", flat=True)
    for conversation_id in api.iterator():
        rows = list(
            Message.objects.filter(conversation_id=conversation_id, purpose="chat").order_by("pk")
        )
        hashes: dict[int, str] = {}
        last = None
        for row in rows:
            row.parent_id = last.pk if last is not None else None
            before = hashes[last.pk] if last is not None else ""
            joins = not row.is_answer or row.status == "completed"
            row.thread_hash = _extend(before, row.role, row.content) if joins else ""
            prefill = last is not None and last.role == "assistant" and not last.is_answer
            if row.is_answer and joins and prefill and last.request_id == row.request_id:
                before_prefill = hashes.get(last.parent_id, "") if last.parent_id else ""
                row.merged_thread_hash = _extend(
                    before_prefill, "assistant", last.content + row.content
                )
            if joins:
                hashes[row.pk] = row.thread_hash
                last = row
        Message.objects.bulk_update(rows, ["parent", "thread_hash", "merged_thread_hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0012_message_purpose"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="conversation",
            name="conv_owner_thread_idx",
        ),
        migrations.AddField(
            model_name="message",
            name="merged_thread_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddField(
            model_name="message",
            name="thread_hash",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("thread_hash", ""), _negated=True),
                fields=["user", "thread_hash"],
                name="msg_user_thread_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("merged_thread_hash", ""), _negated=True),
                fields=["user", "merged_thread_hash"],
                name="msg_user_merged_thread_idx",
            ),
        ),
        migrations.RunPython(link_api_threads, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="conversation",
            name="thread_hash",
        ),
    ]
