"""A long chat history, written in bulk: the sidebar's pages, groups and search are tried on it."""

from datetime import datetime, timedelta

from django.utils import timezone

from conversations.models import Conversation, Message

# Conversation n was last active n * SPACING ago: 2,000 of them span about 14 months, so
# every date group (Today … Previous 30 days, then months) has conversations in it.
SPACING = timedelta(hours=5)


def answer_text(n: int) -> str:
    return f"Here is answer number {n}."


def make_history(
    owner,
    count: int,
    *,
    now: datetime | None = None,
    answers: dict[int, str] | None = None,
    source: str = Conversation.Source.WEB,
    title: str = "Chat",
) -> list[Conversation]:
    """Create `count` conversations (newest first) of one question and one answer each.

    Conversation n is titled "<title> n" and was last active n * SPACING before `now`; its
    answer is `answers[n]` when given, else answer_text(n)."""
    now = now or timezone.now()
    answers = answers or {}
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"{title} {n}", model="dev/dev-chat", source=source)
        for n in range(count)
    )
    # bulk_create stamps updated_at with now (auto_now); bulk_update writes the values given.
    for n, conversation in enumerate(conversations):
        conversation.updated_at = now - n * SPACING
    Conversation.objects.bulk_update(conversations, ["updated_at"], batch_size=500)
    questions = Message.objects.bulk_create(
        (
            Message(role="user", content=f"Question number {n}", **_common(owner, conversation))
            for n, conversation in enumerate(conversations)
        ),
        batch_size=1000,
    )
    Message.objects.bulk_create(
        (
            Message(
                role="assistant",
                is_answer=True,
                content=answers.get(n, answer_text(n)),
                parent=question,
                **_common(owner, conversation),
            )
            for n, (conversation, question) in enumerate(zip(conversations, questions, strict=True))
        ),
        batch_size=1000,
    )
    return conversations


def _common(owner, conversation: Conversation) -> dict:
    return {"conversation": conversation, "user": owner, "request_id": f"h-{conversation.pk}"}
