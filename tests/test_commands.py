"""Management commands for operations."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db


def test_close_interrupted_turns_fails_only_old_streaming_answers(alice):
    conversation = Conversation.objects.create(owner=alice, title="t", model="dev/dev-chat")

    def answer(request_id, status, minutes_ago):
        message = Message.objects.create(
            conversation=conversation,
            user=alice,
            role="assistant",
            is_answer=True,
            status=status,
            request_id=request_id,
        )
        created = timezone.now() - timedelta(minutes=minutes_ago)
        Message.objects.filter(pk=message.pk).update(created_at=created)
        return message

    stale = answer("stale-00001", "streaming", 45)
    live = answer("live-000001", "streaming", 1)
    done = answer("done-000001", "completed", 45)
    out = StringIO()

    call_command("close_interrupted_turns", "--older-than-minutes", "30", stdout=out)

    assert "Marked 1 interrupted" in out.getvalue()
    stale.refresh_from_db()
    assert stale.status == "failed" and "server stopped" in stale.error
    assert Message.objects.get(pk=live.pk).status == "streaming"
    assert Message.objects.get(pk=done.pk).status == "completed"


def test_demo_user_is_refused_outside_debug(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("create_demo_user")


def test_demo_user_can_log_in(settings, client):
    settings.DEBUG = True
    call_command("create_demo_user", stdout=StringIO())
    assert client.login(username="demo", password="demo-password")
