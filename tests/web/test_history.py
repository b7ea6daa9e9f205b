"""The history behind the chat page's sidebar: the site API's pages by cursor, its search,
the date groups, and a chat page that stays small however many conversations a user has."""

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversations.accounts.limits import searching
from conversations.history import Cursor, date_group, group_by_date
from conversations.models import Conversation, Message
from tests.history_factory import make_history

pytestmark = pytest.mark.django_db

API = "/api/conversations/"


def walk(client, **params) -> list[int]:
    """Every conversation id the API lists, page by page through next_cursor."""
    seen, cursor = [], None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        page = client.get(API, query).json()
        seen += [c["id"] for c in page["data"]]
        assert page["has_more"] is (page["next_cursor"] is not None)
        if not page["has_more"]:
            return seen
        cursor = page["next_cursor"]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- pages by cursor -------------------------------------------------------------------


def test_pages_by_cursor_list_every_conversation_once_in_order(alice_client, alice):
    conversations = make_history(alice, 23)
    # Ties on updated_at are broken by id, so none is skipped or repeated across pages.
    Conversation.objects.filter(pk__in=[c.pk for c in conversations[5:12]]).update(
        updated_at=conversations[5].updated_at
    )
    expected = list(
        Conversation.objects.order_by("-updated_at", "-pk").values_list("pk", flat=True)
    )

    assert walk(alice_client, limit=4) == expected
    assert walk(alice_client, limit=5, source="web") == expected


def test_a_conversation_started_between_pages_does_not_repeat_one_on_the_next(alice_client, alice):
    make_history(alice, 6)
    first = alice_client.get(API, {"limit": 3}).json()
    Conversation.objects.create(owner=alice, title="Newer", model="dev/dev-chat")

    second = alice_client.get(API, {"limit": 3, "cursor": first["next_cursor"]}).json()

    ids = [c["id"] for c in first["data"] + second["data"]]
    assert len(ids) == len(set(ids)) == 6
    assert second["has_more"] is False and second["next_cursor"] is None


def test_the_list_keeps_its_old_shape_with_next_cursor_added(alice_client, alice):
    make_history(alice, 3)
    page = alice_client.get(API, {"limit": 2, "offset": 1}).json()
    assert set(page) == {"data", "has_more", "next_cursor"}
    assert [c["title"] for c in page["data"]] == ["Chat 1", "Chat 2"]
    assert page["has_more"] is False and page["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "@@@@",
        b64("2025-01-01T00:00:00+00:00"),  # no id
        b64("yesterday|5"),
        b64("2025-01-01T00:00:00|5"),  # no time zone
        b64("2025-01-01T00:00:00+00:00|0"),
        b64("2025-01-01T00:00:00+00:00|x"),
        base64.urlsafe_b64encode(b"\xff\xfe|1").decode(),
    ],
)
def test_a_bad_cursor_is_a_json_400_naming_it(alice_client, cursor):
    response = alice_client.get(API, {"cursor": cursor})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["field"] == "cursor"


def test_cursor_and_offset_together_are_a_400(alice_client, alice):
    (conversation,) = make_history(alice, 1)
    cursor = Cursor(conversation.updated_at, conversation.pk).encode()
    response = alice_client.get(API, {"cursor": cursor, "offset": 1})
    assert response.status_code == 400 and response.json()["error"]["field"] == "cursor"


def test_a_search_longer_than_200_characters_is_a_400(alice_client):
    response = alice_client.get(API, {"q": "x" * 201})
    assert response.status_code == 400 and response.json()["error"]["field"] == "q"


def test_a_cursor_reads_back_what_it_was_made_of():
    when = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    assert Cursor.decode(Cursor(when, 42).encode()) == Cursor(when, 42)


# --- search ----------------------------------------------------------------------------


def search(client, q: str, **params) -> list[str]:
    response = client.get(API, {"q": q, "source": "web"} | params)
    assert response.status_code == 200, response.content
    return [c["title"] for c in response.json()["data"]]


def test_search_finds_a_word_that_only_an_answer_has(alice_client, alice):
    make_history(alice, 300, answers={250: "Pack a raincoat for Reykjavik in April."})
    assert search(alice_client, "reykjavik") == ["Chat 250"]
    # Words are matched as they start, so a word being typed already finds it.
    assert search(alice_client, "Reykj") == ["Chat 250"]
    assert search(alice_client, "raincoat april") == ["Chat 250"]
    assert search(alice_client, "raincoat tokyo") == []


def test_search_finds_titles_and_questions(alice_client, alice):
    make_history(alice, 5)
    Conversation.objects.filter(title="Chat 3").update(title="Lisbon trip")
    assert search(alice_client, "lisbon") == ["Lisbon trip"]
    # "Question number 4" is the question of Chat 4.
    assert "Chat 4" in search(alice_client, "question 4")


def test_search_is_scoped_to_the_user_and_the_source(alice_client, alice, bob):
    make_history(alice, 2, answers={1: "About the aurora."})
    make_history(bob, 2, answers={0: "Bob's aurora."}, title="Bob")
    make_history(alice, 1, answers={0: "An aurora by API."}, title="API", source="api")

    assert search(alice_client, "aurora") == ["Chat 1"]
    titles = [c["title"] for c in alice_client.get(API, {"q": "aurora"}).json()["data"]]
    assert sorted(titles) == ["API 0", "Chat 1"]


def test_a_superseded_answer_is_not_searched(alice_client, alice):
    (conversation,) = make_history(alice, 1, answers={0: "The first answer said walrus."})
    Message.objects.filter(conversation=conversation, role="assistant").update(
        superseded_at=timezone.now()
    )
    assert search(alice_client, "walrus") == []


def test_search_results_come_in_pages_too(alice_client, alice):
    common = {n: f"Answer {n} mentions kayaks." for n in range(0, 200, 2)}
    make_history(alice, 200, answers=common)

    ids = walk(alice_client, q="kayak", limit=30)

    assert len(ids) == len(set(ids)) == 100
    titles = dict(Conversation.objects.values_list("pk", "title"))
    assert {titles[i] for i in ids} == {f"Chat {n}" for n in range(0, 200, 2)}


@pytest.mark.parametrize("q", ["", "   ", "!!! ???"])
def test_a_search_without_words_lists_nothing_or_everything(alice_client, alice, q):
    make_history(alice, 3)
    expected = [] if q.strip() else ["Chat 0", "Chat 1", "Chat 2"]
    assert search(alice_client, q) == expected


def test_search_words_are_never_read_as_query_syntax(alice_client, alice):
    make_history(alice, 2, answers={0: "It's a plan: rock & roll!"})
    for q in ["rock & roll", "'rock'", "rock:* | !roll", "(rock", "rock <-> roll", "\\"]:
        response = alice_client.get(API, {"q": q})
        assert response.status_code == 200, (q, response.content)
    assert search(alice_client, "rock & roll") == ["Chat 0"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL index")
def test_titles_have_a_full_text_index_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'conv_title_fts_idx'")
        (definition,) = cursor.fetchone()
    assert "gin" in definition and "to_tsvector('simple'" in definition


# --- date groups -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days_ago", "label"),
    [
        (-1, "Today"),
        (0, "Today"),
        (1, "Yesterday"),
        (2, "Previous 7 days"),
        (7, "Previous 7 days"),
        (8, "Previous 30 days"),
        (30, "Previous 30 days"),
        (31, "May 2025"),
        (400, "May 2024"),
    ],
)
def test_date_groups(days_ago, label):
    today = datetime(2025, 6, 8).date()
    when = datetime(2025, 6, 8, 12, tzinfo=UTC) - timedelta(days=days_ago)
    assert date_group(when, today=today) == label


def test_groups_follow_the_current_time_zone():
    # 23:30 UTC on the 7th is already the 8th in Berlin: "Today" there, "Yesterday" in UTC.
    when = datetime(2025, 6, 7, 23, 30, tzinfo=UTC)
    now = datetime(2025, 6, 8, 12, tzinfo=UTC)

    class Item:
        updated_at = when

    with timezone.override("Europe/Berlin"):
        assert group_by_date([Item()], now=now)[0][0] == "Today"
    with timezone.override("UTC"):
        assert group_by_date([Item()], now=now)[0][0] == "Yesterday"


# --- the chat page ---------------------------------------------------------------------


def test_the_chat_page_of_2000_conversations_is_small_and_shows_one_page(
    alice_client, alice, bob, django_assert_max_num_queries
):
    make_history(alice, 2000)
    make_history(bob, 5, title="Bob")

    with django_assert_max_num_queries(6):
        response = alice_client.get("/chat/")

    html = response.content.decode()
    assert len(response.content) < 100_000, len(response.content)
    items = re.findall(r'<li class="conversation" data-conversation-id="(\d+)"', html)
    newest = Conversation.objects.filter(owner=alice).values_list("pk", flat=True)
    assert [int(i) for i in items] == list(newest[: settings.CHAT_SIDEBAR_PAGE_SIZE])
    assert "Bob 0" not in html
    # 50 conversations 5 hours apart: today, yesterday and the days before.
    headings = re.findall(r'<h3 class="conversation-group-heading">([^<]+)</h3>', html)
    assert headings[:3] == ["Today", "Yesterday", "Previous 7 days"]
    # The page says where the next one starts, for sidebar.js.
    next_cursor = re.search(r'data-next-cursor="([^"]+)"', html).group(1)
    following = alice_client.get(API, {"source": "web", "cursor": next_cursor}).json()
    assert following["data"][0]["id"] == newest[settings.CHAT_SIDEBAR_PAGE_SIZE]
    # The list is one Tab stop: no conversation link is in the tab order before the script
    # picks one (a conversation page marks the open one), and no button is.
    nav = html[html.index('<nav id="sidebar"') : html.index("</nav>")]
    assert 'tabindex="0"' not in nav
    assert nav.count('tabindex="-1"') == 3 * settings.CHAT_SIDEBAR_PAGE_SIZE


def test_the_open_conversation_is_the_lists_tab_stop(alice_client, alice):
    conversations = make_history(alice, 3)
    html = alice_client.get(f"/chat/{conversations[1].pk}/").content.decode()
    (stop,) = re.findall(r'<a class="conversation-link" href="([^"]+)" tabindex="0"', html)
    assert stop == f"/chat/{conversations[1].pk}/"


def test_a_short_history_has_no_next_page(alice_client, alice):
    make_history(alice, 3)
    html = alice_client.get("/chat/").content.decode()
    assert 'data-next-cursor=""' in html
    assert re.search(r'<button id="conversation-more"[^>]* hidden>', html)


# Searching is rate-limited, and runs a few at a time ------------------------------------


def test_searches_past_the_rate_get_a_429_that_says_when_to_try_again(
    alice_client, alice, settings
):
    make_history(alice, 3)
    settings.SEARCH_RATE_PER_MINUTE = 3

    statuses = [alice_client.get(API, {"q": "chat"}).status_code for _ in range(4)]
    refused = alice_client.get(API, {"q": "chat"})
    listed = alice_client.get(API)  # a list without q is no search

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "searched 3 times this minute" in refused.json()["error"]["message"]
    assert listed.status_code == 200


def test_one_users_searches_wait_for_each_other_and_leave_room_for_another_user(settings):
    """Five searches of Alice's at once run one after another, holding one place; Bob's
    search meanwhile takes the other place at once."""
    settings.SEARCH_WORKERS = 2
    inside, most, started = 0, 0, {}

    async def search_as(user_id: int, name: str, seconds: float) -> None:
        nonlocal inside, most
        async with searching(user_id):
            started[name] = asyncio.get_running_loop().time()
            inside += user_id == ALICE
            most = max(most, inside)
            await asyncio.sleep(seconds)
            inside -= user_id == ALICE

    async def scenario() -> None:
        alices = [asyncio.create_task(search_as(ALICE, f"alice-{n}", 0.1)) for n in range(5)]
        await asyncio.sleep(0.01)
        await search_as(BOB, "bob", 0.01)
        await asyncio.gather(*alices)

    asyncio.run(scenario())

    assert most == 1  # never two of Alice's at once
    assert started["bob"] < started["alice-1"]  # Bob did not queue behind Alice's searches


ALICE, BOB = 1, 2
