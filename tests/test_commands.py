"""Management commands for operations."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_close_interrupted_turns_marks_only_answers_whose_heartbeat_is_stale(alice):
    conversation = Conversation.objects.create(owner=alice, title="t", model="dev/dev-chat")

    def answer(request_id, status, *, created_minutes_ago, heartbeat_seconds_ago):
        message = Message.objects.create(
            conversation=conversation,
            user=alice,
            role="assistant",
            is_answer=True,
            status=status,
            request_id=request_id,
            content="So far",
            prompt_tokens=7,
            completion_tokens=2,
        )
        now = timezone.now()
        Message.objects.filter(pk=message.pk).update(
            created_at=now - timedelta(minutes=created_minutes_ago),
            heartbeat_at=now - timedelta(seconds=heartbeat_seconds_ago),
        )
        return message

    dead = answer("dead-000001", "streaming", created_minutes_ago=2, heartbeat_seconds_ago=40)
    # Started long ago, but its process is alive and checkpoints it: never touched.
    long_but_alive = answer(
        "alive-00001", "streaming", created_minutes_ago=45, heartbeat_seconds_ago=1
    )
    done = answer("done-000001", "completed", created_minutes_ago=45, heartbeat_seconds_ago=900)
    out = StringIO()

    call_command("close_interrupted_turns", "--stale-seconds", "30", stdout=out)

    assert "Marked 1 answer(s)" in out.getvalue()
    dead.refresh_from_db()
    assert dead.status == "interrupted"
    assert dead.error == "The server stopped while answering."
    assert dead.content == "So far"  # the checkpointed text is kept
    assert Message.objects.get(pk=long_but_alive.pk).status == "streaming"
    assert Message.objects.get(pk=done.pk).status == "completed"
    # The tokens counted so far are charged to the user's day, once.
    assert alice.daily_usage.get().tokens == 9
    call_command("close_interrupted_turns", "--stale-seconds", "30", stdout=StringIO())
    assert alice.daily_usage.get().tokens == 9


def test_demo_user_is_refused_outside_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("create_demo_user")


def test_demo_user_can_log_in(settings, client):
    settings.DEBUG = True
    call_command("create_demo_user", stdout=StringIO())
    assert client.login(username="demo", password="demo-password")
