"""A GIN index for searching conversation titles from the chat page, on PostgreSQL only.

It is built on conversations.history.conversation_title_vector(), the very expression the
sidebar's search uses (message text has its own index, from 0004). SQLite has no GIN
indexes and searches with a plain match instead, so `make run` migrates as before.
"""

from django.contrib.postgres.indexes import GinIndex
from django.db import migrations

from conversations.history import conversation_title_vector

INDEX_NAME = "conv_title_fts_idx"


def title_index() -> GinIndex:
    return GinIndex(conversation_title_vector(), name=INDEX_NAME)


def add_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(apps.get_model("conversations", "Conversation"), title_index())


def remove_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("conversations", "Conversation"), title_index())


class Migration(migrations.Migration):
    dependencies = [("conversations", "0009_message_parent")]

    operations = [migrations.RunPython(add_index, remove_index)]
