"""The sidebar's history in a real browser, with 2,000 conversations: pages loaded as the list
scrolls or on "Show more", date headings, search over titles and answers, and a list that is
one Tab stop with the arrow keys inside."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from conversations.history import date_group
from conversations.models import Conversation
from tests.conftest import logged_in_page
from tests.history_factory import make_history

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

PAGE_SIZE = 50  # settings.CHAT_SIDEBAR_PAGE_SIZE


@pytest.fixture
def page(browser, site, alice) -> Page:
    # The server groups by its time zone (UTC here), the page by the browser's: the same.
    with logged_in_page(
        browser, site.url, "alice", timezone_id="UTC", viewport={"width": 1280, "height": 800}
    ) as page:
        page.wait_for_url("**/chat/")
        yield page


def listed_ids(page: Page, container: str = "#conversation-list") -> list[int]:
    return page.locator(f"{container} li.conversation").evaluate_all(
        "items => items.map((item) => Number(item.dataset.conversationId))"
    )


def newest_ids(owner, count: int) -> list[int]:
    rows = Conversation.objects.filter(owner=owner, source="web").order_by("-updated_at", "-pk")
    return list(rows.values_list("pk", flat=True)[:count])


def focused_title(page: Page) -> str:
    return page.evaluate("document.activeElement.textContent")


def test_2000_conversations_come_a_page_at_a_time_as_the_list_scrolls(page, alice):
    make_history(alice, 2000)

    response = page.goto("/chat/")

    assert len(response.body()) < 100_000
    items = page.locator("#conversation-list li.conversation")
    expect(items).to_have_count(PAGE_SIZE)
    headings = page.locator("#conversation-list .conversation-group-heading")
    expect(headings.first).to_have_text("Today")
    expect(headings.nth(1)).to_have_text("Yesterday")

    scroller = page.locator(".sidebar-scroll")
    for pages in (2, 3):
        scroller.evaluate("element => element.scrollTo(0, element.scrollHeight)")
        expect(items).to_have_count(pages * PAGE_SIZE)

    # In the server's order, none twice, none skipped; a date group goes on across pages.
    assert listed_ids(page) == newest_ids(alice, 3 * PAGE_SIZE)
    labels = headings.all_inner_texts()
    assert len(labels) == len(set(labels))
    assert labels[:4] == ["Today", "Yesterday", "Previous 7 days", "Previous 30 days"]


def test_the_list_is_one_tab_stop_moved_through_with_arrow_keys(page, alice):
    # More pages than the loads scrolling starts meanwhile (End and the focused "Show more"
    # each bring the button into sight) can use up: "Show more" still has one to load.
    conversations = make_history(alice, 300)
    page.goto(f"/chat/{conversations[2].pk}/")
    expect(page.locator("#conversation-list li.conversation")).to_have_count(PAGE_SIZE)

    # Tab: New chat, the search box, then the list once, at the open conversation.
    page.focus("#new-chat")
    page.keyboard.press("Tab")
    expect(page.locator("#conversation-search")).to_be_focused()
    page.keyboard.press("Tab")
    assert focused_title(page) == "Chat 2"
    page.keyboard.press("ArrowDown")
    assert focused_title(page) == "Chat 3"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert focused_title(page) == "Chat 1"
    page.keyboard.press("Home")
    assert focused_title(page) == "Chat 0"
    page.keyboard.press("End")
    assert focused_title(page) == f"Chat {PAGE_SIZE - 1}"
    stops = page.locator(
        "#conversation-list [tabindex='0'], #conversation-list button:not([tabindex='-1'])"
    )
    expect(stops).to_have_count(1)

    # The next Tab leaves the list for "Show more", which loads the next page and moves
    # focus to its first conversation (had scrolling loaded one already, the one after; had
    # scrolling just started loading it, that one's).
    page.keyboard.press("Tab")
    expect(page.locator("#conversation-more")).to_be_focused()
    # Two frames: the observer has seen the button come into sight (and started its load,
    # if it does); then that load has landed.
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    expect(page.locator("#conversation-list")).not_to_have_attribute("aria-busy", "true")
    shown = len(listed_ids(page))
    page.keyboard.press("Enter")
    expect(page.locator("#conversation-list li.conversation")).to_have_count(shown + PAGE_SIZE)
    assert focused_title(page) == f"Chat {shown}"
    assert listed_ids(page) == newest_ids(alice, len(listed_ids(page)))
    expect(stops).to_have_count(1)

    # Enter opens the focused conversation.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/chat/{conversations[shown + 1].pk}/")
    expect(page.locator("#chat-title")).to_have_text(f"Chat {shown + 1}")


def test_f2_renames_the_focused_conversation(page, alice):
    make_history(alice, 3)
    page.reload()
    page.focus("#conversation-search")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")
    assert focused_title(page) == "Chat 1"
    page.keyboard.press("F2")
    field = page.locator("#conversation-list .rename-input")
    expect(field).to_be_focused()
    field.fill("Renamed by keyboard")
    field.press("Enter")
    # Renamed, it is the newest: first, under Today, and still focused.
    first = page.locator("#conversation-list li.conversation").first
    expect(first.locator("a")).to_have_text("Renamed by keyboard")
    expect(first.locator("a")).to_be_focused()
    assert Conversation.objects.filter(title="Renamed by keyboard").count() == 1


def test_search_finds_a_word_only_an_answer_has_and_escape_brings_the_list_back(page, alice, bob):
    make_history(alice, 2000, answers={1234: "Try the zanzibarite caves at dawn."})
    make_history(bob, 3, answers={0: "Bob's zanzibarite notes."}, title="Bob")
    page.reload()
    search = page.locator("#conversation-search")
    results = page.locator("#conversation-results li.conversation")

    # Conversation 1234 is 24 pages down the list: the server finds it.
    search.fill("zanzib")
    expect(results).to_have_count(1)
    expect(results.first.locator("a")).to_have_text("Chat 1234")
    expect(page.locator("#conversation-list")).to_be_hidden()
    expect(page.locator("#sidebar-heading")).to_have_text("Search results")

    search.fill("nothing-like-this")
    expect(page.locator("#conversation-search-status")).to_have_text(
        "No conversations match “nothing-like-this”."
    )
    expect(results).to_have_count(0)

    search.press("Escape")
    expect(search).to_have_value("")
    expect(search).to_be_focused()
    expect(page.locator("#conversation-results")).to_be_hidden()
    expect(page.locator("#conversation-list li.conversation")).to_have_count(PAGE_SIZE)
    expect(page.locator("#conversation-search-status")).to_have_text("")

    # Results come in pages too: every answer says "number".
    search.fill("number")
    expect(results).to_have_count(PAGE_SIZE)
    page.click("#conversation-more")
    expect(results).to_have_count(2 * PAGE_SIZE)
    ids = listed_ids(page, "#conversation-results")
    assert ids == newest_ids(alice, 2 * PAGE_SIZE)

    # Clearing the box brings the list back as well; Down from the box enters the list.
    search.fill("")
    expect(page.locator("#conversation-list")).to_be_visible()
    search.press("ArrowDown")
    assert focused_title(page) == "Chat 0"


def test_a_new_chat_goes_to_the_top_under_today(page, alice):
    make_history(alice, 60, now=timezone.now() - timedelta(days=3))
    page.reload()
    headings = page.locator("#conversation-list .conversation-group-heading")
    expect(headings.first).to_have_text("Previous 7 days")

    page.fill("#message-input", "[[devllm echo]] Hello there")
    page.press("#message-input", "Enter")

    expect(headings.first).to_have_text("Today")
    today = page.locator("#conversation-list .conversation-group").first
    expect(today.locator("li.conversation")).to_have_count(1)
    expect(today.locator("a")).to_have_attribute("aria-current", "page")
    expect(today.locator("a")).to_have_attribute("tabindex", "0")
    expect(headings.nth(1)).to_have_text("Previous 7 days")
    expect(page.locator("#conversation-list li.conversation")).to_have_count(PAGE_SIZE + 1)


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati"])
def test_the_browser_groups_dates_as_the_server_does(browser, site, zone):
    context = browser.new_context(base_url=site.url, timezone_id=zone)
    page = context.new_page()
    page.goto("/accounts/login/")
    now = timezone.now()
    cases = [now - timedelta(hours=hours) for hours in (0, 13, 30, 60, 200, 700, 800, 9000)]
    browser_labels = page.evaluate(
        """async ([cases, now]) => {
            const { dateGroup } = await import("/static/conversations/sidebar.js");
            return cases.map((when) => dateGroup(new Date(when), new Date(now)));
        }""",
        [[when.isoformat() for when in cases], now.isoformat()],
    )
    context.close()
    with timezone.override(zone):
        today = timezone.localdate(now)
        assert browser_labels == [date_group(when, today=today) for when in cases]


def test_the_focus_stays_in_the_list_when_the_last_page_hides_show_more(page, alice):
    make_history(alice, PAGE_SIZE + 10)
    page.goto("/chat/")
    expect(page.locator("#conversation-list li.conversation")).to_have_count(PAGE_SIZE)

    # Focusing "Show more" scrolls it into sight, which loads the last page: the button goes.
    page.focus("#conversation-more")
    expect(page.locator("#conversation-list li.conversation")).to_have_count(PAGE_SIZE + 10)
    expect(page.locator("#conversation-more")).to_be_hidden()
    assert focused_title(page) == f"Chat {PAGE_SIZE + 9}"
