"""In Chromium against a live site: the Thinking section says how long the model thought (as
the answer streams, and after a reload), the site's favicon, and the notice after logging out.
"""

import re

import pytest
from playwright.sync_api import expect

from chatsite.views import LOGGED_OUT_NOTICE
from conversations.models import Message
from conversations.templatetags.turn_format import thought_for

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_thinking_says_how_long_the_model_thought_as_it_streams_and_after_a_reload(page):
    page.select_option("#model-select", label="Dev reasoner")
    page.fill("#message-input", "[[devllm tokens=3 delay_ms=20]] Think it over")
    page.press("#message-input", "Enter")

    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "completed", timeout=15_000)
    summary = answer.locator("details.reasoning summary")
    # Said by the page itself, from the stream: no reload yet.
    expect(summary).to_have_text(re.compile(r"^Thought for (less than a second|\d+ s)$"))

    saved = Message.objects.get(pk=int(answer.get_attribute("data-message-id")))
    assert saved.reasoning_ms is not None
    page.reload()
    summary = page.locator("article.message-assistant").last.locator("details.reasoning summary")
    expect(summary).to_have_text(thought_for(saved.reasoning_ms))


def test_the_site_has_a_favicon(page):
    icon = page.locator("link[rel=icon]")
    expect(icon).to_have_attribute("href", "/static/favicon.svg")

    # Browsers ask for /favicon.ico where a page names no icon (the admin, a JSON answer).
    redirect = page.request.get("/favicon.ico", max_redirects=0)
    assert redirect.status == 302
    assert redirect.headers["location"] == "/static/favicon.svg"
    svg = page.request.get("/favicon.ico")
    assert svg.ok
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text().startswith("<svg")


def test_logging_out_says_so_on_the_login_page_once(page):
    page.get_by_role("button", name="Log out").click()

    page.wait_for_url("**/accounts/login/")
    expect(page.get_by_role("status")).to_have_text(LOGGED_OUT_NOTICE)
    page.reload()
    expect(page.get_by_text(LOGGED_OUT_NOTICE)).to_have_count(0)
