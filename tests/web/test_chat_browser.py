"""The chat page in a real browser: Playwright driving Debian's Chromium against daphne."""

import re
import time

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Message
from tests.conftest import fresh_rate_window, log_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, site, alice) -> Page:
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    yield page
    context.close()


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def test_the_answer_grows_in_the_page_as_it_streams(page):
    send(page, "[[devllm delay_ms=40]] Tell me about streaming.")
    answer = page.locator("article.message-assistant").last
    body = answer.locator(".message-body")

    lengths = []
    deadline = time.monotonic() + 20
    while answer.get_attribute("data-status") == "streaming" and time.monotonic() < deadline:
        lengths.append(len(body.inner_text()))
        time.sleep(0.05)

    expect(answer).to_have_attribute("data-status", "completed")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 3, f"saw lengths {growing} before the end"
    assert lengths == sorted(lengths), "the answer shrank while streaming"
    expect(page.locator("#conversation-list li")).to_have_count(1)
    assert "/chat/" in page.url and page.url.rstrip("/").split("/")[-1].isdigit()

    final_text = body.inner_text()
    page.reload()
    expect(page.locator("article.message-assistant .message-body").last).to_have_text(final_text)


def test_stop_keeps_the_partial_answer_marked_as_stopped_after_a_reload(page):
    send(page, "[[devllm delay_ms=80]] A long answer, please.")
    answer = page.locator("article.message-assistant").last
    expect(answer.locator(".message-body")).not_to_have_text("", timeout=10_000)
    expect(page.locator("#stop-button")).to_be_visible()
    # A few words in, so that what Stop keeps is a real part of an answer.
    expect(answer.locator(".message-body")).to_have_text(re.compile(r"\S+\s+\S+\s+\S+"))

    with page.expect_response(lambda response: "/api/turns/" in response.url) as stopping:
        page.click("#stop-button")

    expect(answer).to_have_attribute("data-status", "stopped")
    shown = answer.locator(".message-body").inner_text()
    assert shown
    expect(page.locator("#message-input")).to_be_enabled()
    # Stop asked the server to stop the answer, wherever it runs; it answered once saved.
    stop = stopping.value
    assert (stop.request.method, stop.status) == ("POST", 200)
    assert stop.json()["status"] == "stopped"

    def saved():
        return Message.objects.filter(role="assistant", status="stopped").first()

    deadline = time.monotonic() + 5
    while not saved() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert saved() is not None
    page.reload()
    reloaded = page.locator("article.message-assistant").last
    expect(reloaded).to_have_attribute("data-status", "stopped")
    expect(reloaded.locator(".message-status")).to_have_text("Stopped")
    assert reloaded.locator(".message-body").inner_text().startswith(shown[:20])


def test_an_upstream_failure_is_shown_in_words_and_the_question_stays(page):
    send(page, "[[devllm status=503]] Will this work?")

    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "failed")
    expect(answer.locator(".message-status")).to_contain_text("failed (HTTP 503)")
    expect(page.locator("article.message-user").last).to_contain_text("Will this work?")


def test_an_empty_message_is_not_sent(page):
    send(page, "   ")
    expect(page.locator("article.message")).to_have_count(0)
    assert Message.objects.count() == 0


def test_over_the_rate_limit_the_page_says_how_long_to_wait_and_keeps_the_text(
    page, alice, set_limits
):
    set_limits(alice, requests_per_minute=1)
    fresh_rate_window(alice)
    send(page, "[[devllm tokens=2]] first")
    expect(page.locator("article.message-assistant").last).to_have_attribute(
        "data-status", "completed"
    )

    send(page, "second, too soon")

    error = page.locator("#composer-error")
    expect(error).to_contain_text("limit of 1 request a minute")
    expect(error).to_contain_text("Try again in")
    expect(page.locator("#message-input")).to_have_value("second, too soon")
    expect(page.locator("article.message-user")).to_have_count(1)


def test_a_user_creates_copies_and_revokes_an_api_key(page):
    page.goto("/settings/api-keys/")
    page.fill("#key-name", "notebook")
    page.click("text=Create key")

    key = page.locator("#new-key-value").input_value()
    assert key.startswith("cs-")
    page.goto("/settings/api-keys/")
    expect(page.locator("#new-key-value")).to_have_count(0)
    row = page.locator("tr", has_text="notebook")
    expect(row).to_contain_text(key[:10])
    row.get_by_role("button", name="Revoke notebook").click()
    page.locator("#revoke-dialog").get_by_role("button", name="Revoke").click()  # confirm
    expect(page.locator("tr", has_text="notebook")).to_contain_text("Revoked")


@pytest.mark.parametrize("after_ms", [0, 20, 50])
def test_escape_a_moment_after_enter_stops_the_answer_on_the_server(page, alice, after_ms):
    """The page chooses the request ID before it sends, so its Stop can name the answer
    even when it overtakes the request itself; the server then stops the answer as it
    starts. Before, 4 of 6 such answers ran on to the end, each one charged."""
    page.fill("#message-input", "[[devllm tokens=30 delay_ms=30]] A story, please.")
    page.press("#message-input", "Enter")
    page.wait_for_timeout(after_ms)
    page.keyboard.press("Escape")

    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(page.locator("#message-input")).to_be_enabled()

    def ended():
        return Message.objects.filter(user=alice, is_answer=True).exclude(status="streaming")

    deadline = time.monotonic() + 10
    while not ended().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (saved,) = ended()
    assert saved.status == "stopped"
    # The message stays where it was saved, as in any chat app: in its conversation, shown.
    expect(page).to_have_url(re.compile(rf"/chat/{saved.conversation_id}/$"))
    expect(page.locator("article.message-user").last).to_contain_text("A story, please.")
    expect(page.locator("#message-input")).to_have_value("")
    time.sleep(1.5)  # long enough for the whole answer, had it run on
    assert Message.objects.get(pk=saved.pk).status == "stopped"
