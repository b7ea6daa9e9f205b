"""Reviewing saved conversations in the admin: permissions, search, exports, scale, usage."""

import csv
import datetime
import io
import json
import tracemalloc

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.admin import exports
from conversations.admin.review import ConversationAdmin
from conversations.admin.usage import usage_overview
from conversations.models import Conversation, Message
from conversations.search import messages_matching_text
from conversations.usage import TokenUsage

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/conversations/conversation/"
POSTGRES = connection.vendor == "postgresql"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def viewer(make_user):
    user = make_user("reviewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_conversation", "view_message"])
    )
    return user


@pytest.fixture
def staff_without_view(make_user):
    return make_user("helpdesk", is_staff=True)


def seed_conversation(owner, n=0, *, answer="A calm answer.", reasoning="", **answer_fields):
    conversation = Conversation.objects.create(
        owner=owner, title=f"Conversation {n}", model="dev/dev-chat"
    )
    request_id = f"req-{owner.pk}-{n}-{conversation.pk}"
    Message.objects.create(
        conversation=conversation,
        user=owner,
        role="user",
        content=f"Question {n}",
        request_id=request_id,
    )
    Message.objects.create(
        conversation=conversation,
        user=owner,
        role="assistant",
        is_answer=True,
        content=answer,
        reasoning=reasoning,
        request_id=request_id,
        model="dev/dev-chat",
        upstream_id=f"chatcmpl-{n}",
        **({"prompt_tokens": 3, "completion_tokens": 7, "usage_reported": True} | answer_fields),
    )
    return conversation


# Permissions ------------------------------------------------------------------------------


def test_superuser_reads_and_deletes_but_never_edits(superuser, alice):
    conversation = seed_conversation(alice)
    client = client_for(superuser)
    change_url = f"{CHANGELIST}{conversation.pk}/change/"

    page = client.get(change_url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    assert client.post(change_url, {"title": "Edited"}).status_code == 403
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{conversation.pk}/delete/").status_code == 200
    client.post(f"{CHANGELIST}{conversation.pk}/delete/", {"post": "yes"})
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_staff_with_view_permission_reviews_exports_and_sees_usage_only(viewer, alice):
    conversation = seed_conversation(alice)
    client = client_for(viewer)
    change_url = f"{CHANGELIST}{conversation.pk}/change/"

    assert client.get(CHANGELIST).status_code == 200
    assert "A calm answer." in client.get(change_url).content.decode()
    assert client.get(f"{CHANGELIST}usage/").status_code == 200
    export = client.post(
        CHANGELIST, {"action": "export_jsonl", "_selected_action": [conversation.pk]}
    )
    assert export.status_code == 200
    assert client.post(change_url, {"title": "Edited"}).status_code == 403
    assert client.get(f"{CHANGELIST}{conversation.pk}/delete/").status_code == 403
    assert (
        client.get(
            f"/admin/conversations/message/{conversation.messages.first().pk}/change/"
        ).status_code
        == 200
    )
    conversation.refresh_from_db()
    assert conversation.title == "Conversation 0"


def test_staff_with_view_conversation_only_see_metadata_but_no_message_text(make_user, alice):
    conversation = seed_conversation(alice, answer="A secret answer.")
    reviewer = make_user("metadata-only", is_staff=True)
    reviewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client = client_for(reviewer)

    page = client.get(f"{CHANGELIST}{conversation.pk}/change/")
    listing = client.get(CHANGELIST)

    content = page.content.decode()
    assert "A secret answer." not in content and "Question 0" not in content
    assert "Reading messages needs the &ldquo;view message&rdquo; permission." in content
    assert '<div class="readonly">2</div>' in content  # the message count is metadata
    assert "Conversation 0" in content and "alice" in content
    assert listing.context["action_form"] is None  # no export is offered
    assert "Message text is searched with" in listing.content.decode()


def test_staff_without_view_permission_sees_nothing(staff_without_view, alice):
    conversation = seed_conversation(alice)
    client = client_for(staff_without_view)
    for url in (
        CHANGELIST,
        f"{CHANGELIST}{conversation.pk}/change/",
        f"{CHANGELIST}usage/",
        "/admin/conversations/message/",
    ):
        assert client.get(url).status_code == 403, url
    assert "Conversations" not in client.get("/admin/").content.decode()


def test_plain_user_is_sent_to_the_admin_login(alice):
    response = client_for(alice).get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# Search -----------------------------------------------------------------------------------


def test_searching_a_request_or_upstream_id_finds_its_conversation(superuser, alice):
    wanted = seed_conversation(alice, 1)
    seed_conversation(alice, 2)
    client = client_for(superuser)
    request_id = wanted.messages.first().request_id

    for term in (request_id, "chatcmpl-1"):
        found = client.get(CHANGELIST, {"q": term}).context["cl"].result_list
        assert list(found) == [wanted], term


def test_search_does_not_inflate_the_listed_counts(superuser, alice):
    conversation = seed_conversation(alice)
    row = client_for(superuser).get(CHANGELIST, {"q": "Question"}).context["cl"].result_list[0]
    assert row.pk == conversation.pk
    assert (row.message_count, row.tokens) == (2, 10)


def test_search_finds_usernames_emails_and_titles(superuser, alice, bob):
    mine, theirs = seed_conversation(alice, 1), seed_conversation(bob, 2)
    client = client_for(superuser)
    assert list(client.get(CHANGELIST, {"q": "bob@example"}).context["cl"].result_list) == [theirs]
    assert list(client.get(CHANGELIST, {"q": "Conversation 1"}).context["cl"].result_list) == [mine]


LONG_ANSWER = " ".join(["filler"] * 3000 + ["aurochs"] + ["padding"] * 3000)


def test_full_text_search_finds_a_word_in_the_middle_of_a_long_answer(superuser, alice):
    wanted = seed_conversation(alice, 1, answer=LONG_ANSWER)
    seed_conversation(alice, 2)

    found = client_for(superuser).get(CHANGELIST, {"q": "aurochs"}).context["cl"].result_list

    assert list(found) == [wanted]


@pytest.mark.skipif(not POSTGRES, reason="GIN full-text indexes exist only on PostgreSQL")
def test_full_text_search_uses_the_gin_index(alice):
    for n in range(50):
        seed_conversation(alice, n, answer=LONG_ANSWER if n == 7 else f"answer number {n}")
    query = messages_matching_text("aurochs").values("pk")
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        # Tiny tables are cheaper to scan; forbid that so the plan shows whether the
        # index *can* serve this query's expression.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "msg_content_fts_idx" in plan, plan


# Exports ----------------------------------------------------------------------------------


@pytest.fixture
def review_set(alice, bob):
    first = seed_conversation(
        alice,
        1,
        answer='Café — naïve, "quoted", with, commas\nand a 2nd line. 日本語 ✓ 🙂',
        reasoning="Thinking about ünïcödé… 思考",
        status="stopped",
    )
    second = seed_conversation(
        bob, 2, answer="", status="failed", error="The model could not be reached."
    )
    second.messages.filter(role="assistant").update(superseded_at=timezone.now())
    return [first, second]


def run_action(client, action, conversations) -> bytes:
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": [c.pk for c in conversations]}
    )
    assert response.status_code == 200
    assert response.is_async  # streamed by an async generator, as ASGI needs

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def test_jsonl_export_matches_the_database_exactly(superuser, review_set):
    body = run_action(client_for(superuser), "export_jsonl", review_set)

    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["id"] for line in lines] == [c.pk for c in review_set]
    for line, conversation in zip(lines, review_set, strict=True):
        assert line["title"] == conversation.title
        assert line["owner"]["username"] == conversation.owner.username
        saved = list(conversation.messages.order_by("pk"))
        assert [m["id"] for m in line["messages"]] == [m.pk for m in saved]
        for exported, message in zip(line["messages"], saved, strict=True):
            for field in (
                "role",
                "content",
                "reasoning",
                "status",
                "request_id",
                "upstream_id",
                "error",
                "prompt_tokens",
                "completion_tokens",
                "usage_reported",
            ):
                assert exported[field] == getattr(message, field), field
            assert (exported["superseded_at"] is None) == (message.superseded_at is None)
            usage = TokenUsage.of_message(message)
            assert exported["usage"] == (usage.as_json() if usage else None)


def test_csv_export_matches_the_database_exactly(superuser, review_set):
    body = run_action(client_for(superuser), "export_csv", review_set)

    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    messages = list(
        Message.objects.filter(conversation__in=review_set).order_by("conversation_id", "pk")
    )
    assert len(rows) == len(messages) == 4
    for row, message in zip(rows, messages, strict=True):
        assert int(row["id"]) == message.pk
        assert int(row["conversation_id"]) == message.conversation_id
        assert row["content"] == message.content
        assert row["reasoning"] == message.reasoning
        assert row["status"] == message.status and row["error"] == message.error
        assert row["owner"] == message.user.username


def seed_many(owner, count):
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"Bulk {n}", model="dev/dev-chat") for n in range(count)
    )
    Message.objects.bulk_create(
        Message(
            conversation=c,
            user=owner,
            role=role,
            is_answer=role == "assistant",
            content="Some words, naïve café ✓ " * 8,
            request_id=f"bulk-{c.pk}",
        )
        for c in conversations
        for role in ("user", "assistant")
    )


def peak_export_memory() -> tuple[int, int]:
    """Stream the JSONL export of every conversation; return (bytes sent, peak memory)."""

    async def consume() -> int:
        sent = 0
        async for chunk in exports.jsonl_lines(Conversation.objects.all()):
            sent += len(chunk)
        return sent

    tracemalloc.start()
    try:
        sent = async_to_sync(consume)()
        return sent, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_exporting_ten_thousand_conversations_keeps_memory_flat(alice):
    seed_many(alice, 1000)
    sent_small, peak_small = peak_export_memory()
    seed_many(alice, 9000)
    sent_large, peak_large = peak_export_memory()

    assert sent_large > 9 * sent_small  # ten times the data went out...
    assert peak_large < 1.5 * peak_small  # ...in about the same memory
    assert peak_large < 40 * 1024 * 1024


# Scale ------------------------------------------------------------------------------------


def count_queries(client, url) -> int:
    # Once first: per-process caches (content types, the session) fill on a first request,
    # whichever test of this process makes it.
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_changelist_queries_do_not_grow_with_rows(superuser, alice, monkeypatch):
    monkeypatch.setattr(ConversationAdmin, "list_per_page", 500)
    client = client_for(superuser)
    for n in range(10):
        seed_conversation(alice, n)
    with_ten = count_queries(client, CHANGELIST)
    for n in range(10, 200):
        seed_conversation(alice, n)
    assert count_queries(client, CHANGELIST) == with_ten


def test_transcript_queries_do_not_grow_with_messages(superuser, alice):
    conversation = seed_conversation(alice)
    client = client_for(superuser)
    url = f"{CHANGELIST}{conversation.pk}/change/"
    with_two = count_queries(client, url)
    for n in range(200):
        Message.objects.create(
            conversation=conversation, user=alice, role="user", content=f"m{n}", request_id=f"x{n}"
        )
    assert count_queries(client, url) == with_two


# Transcript -------------------------------------------------------------------------------


def test_transcript_shows_every_message_with_its_record(superuser, review_set):
    first = review_set[0]
    page = client_for(superuser).get(f"{CHANGELIST}{first.pk}/change/").content.decode()
    answer = first.messages.get(role="assistant")
    assert answer.request_id in page and "chatcmpl-1" in page
    assert "Thinking" in page and "思考" in page
    assert "3 in, 7 out" in page
    assert f"/admin/conversations/message/{answer.pk}/change/" in page
    assert f"/admin/auth/user/{first.owner_id}/change/" in page


def test_answer_html_is_escaped_in_the_transcript(superuser, alice):
    conversation = seed_conversation(
        alice, answer='<script>alert(1)</script><img src=x onerror="alert(2)">'
    )
    page = client_for(superuser).get(f"{CHANGELIST}{conversation.pk}/change/").content.decode()
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# Usage overview ---------------------------------------------------------------------------


def answer_on(user, day, *, status="completed", prompt=0, completion=0, ttft=None):
    conversation = Conversation.objects.create(owner=user, title="u", model="dev/dev-chat")
    message = Message.objects.create(
        conversation=conversation,
        user=user,
        role="assistant",
        is_answer=True,
        status=status,
        request_id=f"usage-{conversation.pk}",
        prompt_tokens=prompt,
        completion_tokens=completion,
        time_to_first_token_ms=ttft,
    )
    noon = datetime.datetime.combine(day, datetime.time(12), tzinfo=datetime.UTC)
    Message.objects.filter(pk=message.pk).update(created_at=noon)


def test_usage_overview_matches_figures_computed_by_hand(superuser, alice, bob):
    day1, day2, outside = (
        datetime.date(2026, 3, 1),
        datetime.date(2026, 3, 2),
        datetime.date(2026, 3, 5),
    )
    answer_on(alice, day1, prompt=10, completion=20, ttft=100)
    answer_on(alice, day1, status="stopped", prompt=5, completion=5, ttft=300)
    answer_on(alice, day2, status="failed", ttft=None)
    answer_on(bob, day2, prompt=100, completion=200, ttft=200)
    answer_on(bob, outside, prompt=999, completion=999, ttft=5)

    overview = usage_overview(start=day1, end=day2)

    assert overview.requests == 4
    assert (overview.completed, overview.stopped, overview.failed) == (2, 1, 1)
    assert overview.error_rate == 0.25 and overview.stop_rate == 0.25
    # Nearest rank over [100, 200, 300]: p50 is the 2nd, p90 and p99 the 3rd.
    assert overview.ttft_percentiles == {"p50": 200, "p90": 300, "p99": 300}
    assert [
        (r["day"], r["user__username"], r["requests"], r["total_tokens"])
        for r in overview.per_user_per_day
    ] == [
        (day1, "alice", 2, 40),
        (day2, "alice", 1, 0),
        (day2, "bob", 1, 300),
    ]
    assert [
        (r["user__username"], r["requests"], r["total_tokens"]) for r in overview.top_users
    ] == [
        ("bob", 1, 300),
        ("alice", 3, 40),
    ]
    page = (
        client_for(superuser)
        .get(f"{CHANGELIST}usage/", {"start": "2026-03-01", "end": "2026-03-02"})
        .content.decode()
    )
    assert '<td data-figure="requests">4</td>' in page
    assert '<td data-figure="error_rate">25 %</td>' in page
    assert '<td data-figure="ttft_p50">200 ms</td>' in page


def test_interrupted_answers_are_counted_and_filtered_apart_from_stops_and_failures(
    superuser, alice
):
    """A server's restart is neither a user's Stop nor the model's failure."""
    day = datetime.date(2026, 3, 1)
    answer_on(alice, day, status="stopped")
    answer_on(alice, day, status="failed")
    answer_on(alice, day, status="interrupted", prompt=5, completion=3)
    answer_on(alice, day, status="interrupted")

    overview = usage_overview(start=day, end=day)

    assert (overview.stopped, overview.failed, overview.interrupted) == (1, 1, 2)
    assert overview.stop_rate == overview.error_rate == 0.25
    client = client_for(superuser)
    page = client.get(f"{CHANGELIST}usage/", {"start": "2026-03-01", "end": "2026-03-01"})
    assert '<td data-figure="interrupted">2</td>' in page.content.decode()
    messages = client.get("/admin/conversations/message/", {"status": "interrupted"})
    assert messages.context["cl"].result_count == 2
    conversations = client.get(CHANGELIST, {"last_status": "interrupted"})
    assert conversations.context["cl"].result_count == 2
