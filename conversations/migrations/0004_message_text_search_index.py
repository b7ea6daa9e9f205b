"""A GIN index for the admin's full-text search of message text, on PostgreSQL only.

It is built on conversations.search.message_text_vector(), the very expression the
search queries use; SQLite has no GIN indexes and searches with a plain match instead.
"""

from django.contrib.postgres.indexes import GinIndex
from django.db import migrations

from conversations.search import message_text_vector

INDEX_NAME = "msg_content_fts_idx"


def text_index() -> GinIndex:
    return GinIndex(message_text_vector(), name=INDEX_NAME)


def add_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(apps.get_model("conversations", "Message"), text_index())


def remove_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("conversations", "Message"), text_index())


class Migration(migrations.Migration):
    dependencies = [("conversations", "0003_message_superseded_at")]

    operations = [migrations.RunPython(add_index, remove_index)]
