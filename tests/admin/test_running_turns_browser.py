"""The admin's live view of running answers in a real browser, across two server processes.

An answer runs on process A; a staff member's page is served by process B. The page's list
updates itself (an EventSource fed by the channel layer), Watch shows the answer's words as
they come, and Stop stops it on A. A staff member without the permission to stop sees no
Stop button, and a plain user is sent to the admin's login.
"""

import pytest
from playwright.sync_api import expect

from conversations.models import Message, TurnAudit
from tests.admin.test_running_turns_admin import LIVE, LONG_ANSWER, Tail, grant, process_of
from tests.conftest import log_in, log_in_browser, two_sites_sharing_redis
from tests.servers import ROOT, devllm_record
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def process_a_and_b(site_env, server_logs):
    with two_sites_sharing_redis(site_env, server_logs, "live-browser") as sites:
        yield sites


def start_answer(site, message: str = LONG_ANSWER) -> tuple[Tail, str]:
    """Alice asks on `site` through the site API; return her stream and the request ID."""
    owner = Tail(
        log_in(site.url, "alice"),
        "POST",
        "/api/conversations/",
        json={"message": message, "model": "dev/dev-chat"},
    )
    return owner, owner.wait_for(lambda events: events and events[0].data["request_id"])


def test_staff_watch_and_stop_an_answer_running_on_another_process(
    browser, process_a_and_b, devllm, make_user, alice
):
    a, b = process_a_and_b
    grant(make_user("operator", is_staff=True), "view_message", "stop_turn", "view_turnaudit")
    context = browser.new_context(base_url=b.url)
    page = context.new_page()
    log_in_browser(page, "operator", path="/admin/login/")
    page.goto("/admin/conversations/message/")
    page.get_by_role("link", name="Running answers").click()
    expect(page.locator(".running-state")).to_contain_text("Live")
    expect(page.locator(".running-empty")).to_be_visible()

    # Markdown, which Watch shows rendered as its owner sees it (the words come one by one).
    owner, request_id = start_answer(a, LONG_ANSWER.replace("]] w1", "]] **Bold** w1", 1))

    row = page.locator(f'#running-turns tr[data-request-id="{request_id}"]')
    expect(row.locator(".running-user")).to_have_text("alice")
    expect(row.locator(".running-model")).to_have_text("dev/dev-chat")
    expect(row.locator(".running-source")).to_have_text("Web")
    expect(row.locator(".running-process")).to_have_text(process_of(a))
    expect(page.locator(".running-empty")).to_be_hidden()
    tokens = int(row.locator(".running-tokens").inner_text())
    page.wait_for_function(
        "([el, n]) => Number(el.textContent) > n + 2",
        arg=[row.locator(".running-tokens").element_handle(), tokens],
    )

    row.get_by_role("button", name="Watch").click()
    watched = page.locator(".running-watch-answer")
    expect(watched).to_contain_text("w1 w2 w3")
    expect(watched.locator("strong")).to_have_text("Bold")
    assert "**" not in watched.inner_text()
    expect(page.locator(".running-watch-state")).to_have_text("Watching…")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "admin-running-answers.png"), full_page=True)

    # Stop asks first: dismissed, the answer goes on.
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    row.get_by_role("button", name="Stop").click()
    assert asked and "Stop alice's answer" in asked[0]
    page.wait_for_timeout(500)
    assert Message.objects.get(request_id=request_id, is_answer=True).status == "streaming"
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()

    expect(page.locator(".running-watch-state")).to_have_text("Ended: stopped")
    expect(row).to_have_count(0)
    expect(page.locator(".running-empty")).to_be_visible()
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert answer.status == "stopped"
    assert watched.inner_text().strip() == answer.content.replace("**", "").strip()
    assert wait_for(lambda: devllm_record(devllm, request_id)["client_disconnected"])

    # The audit records, in the admin: both actions, then only the Stop.
    page.goto("/admin/conversations/turnaudit/")
    records = page.locator("#result_list tbody tr")
    expect(records).to_have_count(2)
    expect(records.filter(has_text="Watched")).to_contain_text(request_id)
    expect(records.filter(has_text="Stopped")).to_contain_text("alice")
    page.locator("#changelist-filter").get_by_role("link", name="Stopped").click()
    expect(records).to_have_count(1)
    expect(records).to_contain_text("operator")
    assert TurnAudit.objects.filter(request_id=request_id, action="stop").count() == 1
    owner.close()
    context.close()


def test_without_stop_permission_no_stop_button_and_ended_answers_leave_the_list(
    browser, process_a_and_b, make_user, alice
):
    a, b = process_a_and_b
    grant(make_user("watcher", is_staff=True), "view_message")
    context = browser.new_context(base_url=b.url)
    page = context.new_page()
    log_in_browser(page, "watcher", path="/admin/login/")
    page.goto(LIVE)
    expect(page.locator(".running-state")).to_contain_text("Live")

    owner, request_id = start_answer(a)
    row = page.locator(f'#running-turns tr[data-request-id="{request_id}"]')
    expect(row.get_by_role("button", name="Watch")).to_be_visible()
    expect(row.get_by_role("button", name="Stop")).to_have_count(0)
    short, short_id = start_answer(a, "[[devllm echo delay_ms=150]] one two three four five")
    short_row = page.locator(f'#running-turns tr[data-request-id="{short_id}"]')
    expect(short_row).to_have_count(1)

    short.wait_for(lambda events: events[-1].name == "done")
    expect(short_row).to_have_count(0)
    expect(row).to_have_count(1)  # the long one runs on
    assert log_in(a.url, "alice").post(f"/api/turns/{request_id}/stop").status_code == 200
    expect(row).to_have_count(0)
    for tail in (owner, short):
        tail.close()

    # A plain user is sent to the admin's login.
    plain = browser.new_context(base_url=b.url)
    alices = plain.new_page()
    log_in_browser(alices, "alice")
    alices.goto(LIVE)
    expect(alices).to_have_url(f"{b.url}/admin/login/?next={LIVE}")
    plain.close()
    context.close()
