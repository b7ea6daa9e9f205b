"""Web chats become trees: each message names its parent, so that regenerated answers and
edited questions stay reachable as versions."""

import django.db.models.deletion
from django.db import migrations, models


def link_parents(apps, schema_editor):
    """Give the web chats saved so far their parents, from what the old linear thread kept.

    The shown thread (messages not superseded) is a chain. A hidden answer follows the
    question of its request (or, regenerated, the question before it); a hidden question was
    edited, so it follows what the shown question that replaced it follows: the shown message
    just before it."""
    Message = apps.get_model("conversations", "Message")
    Conversation = apps.get_model("conversations", "Conversation")
    web = Conversation.objects.filter(source="web").values_list("pk", flat=True)
    for conversation_id in web.iterator():
        rows = list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("pk")
            .values_list("pk", "role", "request_id", "superseded_at")
        )
        question_of_request = {r[2]: r[0] for r in rows if r[1] == "user"}
        parents = {}
        last_shown = None
        last_question = None
        for pk, role, request_id, superseded_at in rows:
            if superseded_at is None:
                parents[pk] = last_shown
            elif role == "user":
                parents[pk] = last_shown
            else:
                parents[pk] = question_of_request.get(request_id, last_question)
            if superseded_at is None:
                last_shown = pk
            if role == "user":
                last_question = pk
        for pk, parent in parents.items():
            if parent is not None:
                Message.objects.filter(pk=pk).update(parent_id=parent)


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0008_staff_turn_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="children",
                to="conversations.message",
            ),
        ),
        migrations.RunPython(link_parents, migrations.RunPython.noop, elidable=True),
    ]
