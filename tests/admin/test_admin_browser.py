"""The admin transcript in a real browser: Markdown rendered, and nothing in it runs."""

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, Message
from tests.conftest import log_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

HOSTILE = (
    "**Bold** and a list:\n\n- one\n- two\n\n"
    "<script>window.__pwned = 1</script>\n\n"
    '<img src="http://127.0.0.1:9/x.png" onerror="window.__pwned = 2">\n\n'
    "[click me](javascript:window.__pwned=3)\n\n"
    "<b>raw html</b>\n\n"
    "```python\nprint('hi')\n```\n"
)


def test_a_hostile_answer_is_inert_in_the_transcript(browser, site, make_user, alice):
    make_user("root", is_staff=True, is_superuser=True)
    conversation = Conversation.objects.create(owner=alice, title="Hostile", model="dev/dev-chat")
    for role, content in (("user", "Say something nasty"), ("assistant", HOSTILE)):
        Message.objects.create(
            conversation=conversation,
            user=alice,
            role=role,
            is_answer=role == "assistant",
            content=content,
            request_id="hostile-1",
        )
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    log_in_browser(page, "root", path="/admin/login/")

    page.goto(f"/admin/conversations/conversation/{conversation.pk}/change/")

    answer = page.locator("article.transcript-assistant .transcript-body")
    expect(answer.locator("strong")).to_have_text("Bold")
    expect(answer.locator("li")).to_have_count(2)
    expect(answer).to_contain_text("<script>window.__pwned = 1</script>")
    expect(answer).to_contain_text("<b>raw html</b>")
    assert answer.locator("img, script, b").count() == 0
    link = answer.locator("a", has_text="click me")
    if link.count():
        link.click()
    assert page.evaluate("window.__pwned") is None
    assert not [url for url in requested if "x.png" in url]
    # Code is highlighted and copyable, as in the chat.
    expect(answer.locator("code.hljs")).to_contain_text("print('hi')")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    answer.locator(".code-copy").click()
    assert page.evaluate("navigator.clipboard.readText()").strip() == "print('hi')"
    context.close()
