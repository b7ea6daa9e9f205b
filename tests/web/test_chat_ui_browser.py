"""The chat page as people use it, in a real browser: Playwright driving Debian's Chromium
against daphne and the development LLM server.

Safe Markdown rendering, code blocks, reasoning, regenerate / edit / retry, the sidebar's
rename and delete, and screenshots of the result in light and dark, desktop and phone.
"""

import re

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Conversation, Message
from tests.conftest import conversation_with_messages, log_in_browser
from tests.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "artifacts" / "screenshots"

HOSTILE_MARKDOWN = """[[devllm echo]] Some **bold** text before the tricks.

<script>window.__pwned=1</script>

<img src="http://127.0.0.1:9/x.png" onerror="window.__pwned=2">

A link: [click](javascript:window.__pwned=3) and a real one: [docs](https://example.com/docs).

Inline raw HTML: <b>bold?</b> stays literal.

![a picture](http://127.0.0.1:9/x.png)"""

RICH_MARKDOWN = """[[devllm echo delay_ms=25]] # Packing list

Things to bring, in **order of importance**:

1. A *passport*
2. Tickets
3. `sunscreen`

- one bullet
- another ~~wrong~~ right bullet

> Travel light.

| Item | Count |
| ---- | ----: |
| Socks | 4 |

```python
def total(items):
    return sum(item.count for item in items)
```

See [the guide](https://example.com/guide)."""

CODE_MARKDOWN = """[[devllm echo]] Here you go:

```python
import math

def area(radius: float) -> float:
    return math.pi * radius ** 2
```"""


@pytest.fixture
def page(browser, site, alice) -> Page:
    context = browser.new_context(
        base_url=site.url,
        permissions=["clipboard-read", "clipboard-write"],
        viewport={"width": 1280, "height": 800},
    )
    page = context.new_page()
    # Script errors and Content-Security-Policy violations both land in the console.
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    yield page
    context.close()
    assert not problems, problems


def open_elsewhere(browser, site, url: str) -> Page:
    """The same chat open on another device (its own browser context, logged in): it hears
    nothing of this browser's tabs, so it goes stale when the chat changes here."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 800})
    elsewhere = context.new_page()
    log_in_browser(elsewhere, "alice")
    elsewhere.wait_for_url("**/chat/")
    elsewhere.goto(url)
    return elsewhere


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def last_answer(page: Page):
    return page.locator("article.message-assistant").last


def wait_until_finished(page: Page, status: str = "completed", timeout: float = 15_000):
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", status, timeout=timeout)
    expect(page.locator("#thread")).to_have_attribute("aria-busy", "false")
    return answer


# --- Safe rendering ------------------------------------------------------------------


def test_a_hostile_answer_renders_as_inert_text_also_after_a_reload(page):
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    send(page, HOSTILE_MARKDOWN)
    answer = wait_until_finished(page)

    def check_inert():
        body = answer.locator(".message-body")
        expect(body.locator("strong")).to_have_text("bold")
        expect(body).to_contain_text("<script>window.__pwned=1</script>")
        expect(body).to_contain_text('<img src="http://127.0.0.1:9/x.png" onerror=')
        expect(body).to_contain_text("<b>bold?</b>")
        assert body.locator("b").count() == 0
        assert body.locator("img").count() == 0
        assert page.locator("#thread img, #thread script").count() == 0

        # The javascript: link keeps its text but loses its target; clicking does nothing.
        trap = body.get_by_text("click", exact=True)
        expect(trap).to_be_visible()
        assert trap.get_attribute("href") is None
        trap.click()
        # A real link opens in a new tab and tells the other site nothing.
        docs = body.get_by_role("link", name="docs")
        expect(docs).to_have_attribute("href", "https://example.com/docs")
        expect(docs).to_have_attribute("target", "_blank")
        expect(docs).to_have_attribute("rel", "noopener noreferrer nofollow")
        # The image is a link to it, never loaded.
        expect(body.get_by_role("link", name="Image: a picture")).to_be_visible()

        page.wait_for_timeout(300)
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert not [url for url in requested if "x.png" in url]

    check_inert()
    page.reload()
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "completed")
    check_inert()


def test_a_code_block_is_highlighted_and_its_copy_button_copies_the_code(page):
    send(page, CODE_MARKDOWN)
    answer = wait_until_finished(page)

    block = answer.locator(".code-block")
    expect(block).to_have_count(1)
    code = block.locator("pre > code.hljs")
    expect(code).to_have_class(re.compile(r"\blanguage-python\b"))
    assert code.locator("span[class^='hljs-']").count() >= 3
    expect(block.locator(".hljs-keyword").first).to_have_text("import")
    expect(block.locator(".code-language")).to_have_text("python")

    copy = block.get_by_role("button", name="Copy code")
    copy.click()
    expect(block.locator(".code-copy")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == (
        "import math\n\ndef area(radius: float) -> float:\n    return math.pi * radius ** 2\n"
    )
    # The confirmation goes away again.
    expect(block.locator(".code-copy")).to_have_text("Copy", timeout=4_000)


def test_markdown_renders_while_streaming_and_identically_after_a_reload(page):
    thread = page.locator("#thread")
    expect(thread).to_have_attribute("aria-live", "polite")
    send(page, RICH_MARKDOWN)

    streaming = page.locator("article.message-assistant[data-status='streaming']")
    # Waiting dots until the first token, then Markdown as it streams.
    expect(streaming.get_by_role("img", name="Waiting for the answer")).to_be_visible()
    expect(thread).to_have_attribute("aria-busy", "true")
    expect(streaming.locator(".message-body h1")).to_have_text("Packing list")
    expect(streaming.locator(".message-body strong")).to_have_text("order of importance")
    expect(streaming.locator(".message-body ol > li").first).to_have_text("A passport")

    answer = wait_until_finished(page)
    body = answer.locator(".message-body")
    expect(body.locator("ol > li")).to_have_count(3)
    expect(body.locator("ul > li")).to_have_count(2)
    expect(body.locator("em")).to_have_text("passport")
    expect(body.locator("del")).to_have_text("wrong")
    expect(body.locator("blockquote")).to_have_text("Travel light.")
    expect(body.locator("table td").first).to_have_text("Socks")
    expect(body.locator("code.hljs")).to_have_count(1)
    expect(body).not_to_contain_text("**")
    streamed_html = body.inner_html()
    assert "<li>" in streamed_html and "<strong>" in streamed_html

    page.reload()
    reloaded = last_answer(page).locator(".message-body")
    expect(reloaded.locator("code.hljs")).to_have_count(1)
    assert reloaded.inner_html() == streamed_html


# --- Sidebar -------------------------------------------------------------------------


def test_rename_a_conversation_inline_and_it_survives_a_reload(page, alice):
    conversation = conversation_with_messages(alice, "Old title")
    other = conversation_with_messages(alice, "Something else")
    page.goto(f"/chat/{conversation.pk}/")
    item = page.locator(f"#conversation-list li[data-conversation-id='{conversation.pk}']")
    expect(item.locator("a")).to_have_attribute("aria-current", "page")
    expect(page.locator("#chat-title")).to_have_text("Old title")

    # Escape cancels.
    item.get_by_role("button", name="Rename “Old title”").click()
    field = item.get_by_role("textbox")
    expect(field).to_be_focused()
    field.fill("Not this")
    field.press("Escape")
    expect(item.locator("a")).to_have_text("Old title")
    assert Conversation.objects.get(pk=conversation.pk).title == "Old title"

    # Enter saves.
    item.get_by_role("button", name="Rename “Old title”").click()
    field = item.get_by_role("textbox")
    field.fill("Trip to Lisbon")
    field.press("Enter")
    expect(item.locator("a")).to_have_text("Trip to Lisbon")
    expect(item.locator("a")).to_be_focused()
    expect(page.locator("#chat-title")).to_have_text("Trip to Lisbon")
    expect(page).to_have_title("Trip to Lisbon · chatsite")
    expect(item.get_by_role("button", name="Rename “Trip to Lisbon”")).to_have_count(1)
    # A rename counts as activity: the conversation moves to the top, as the server lists it.
    expect(page.locator("#conversation-list li").first).to_have_attribute(
        "data-conversation-id", str(conversation.pk)
    )

    page.reload()
    expect(page).to_have_title("Trip to Lisbon · chatsite")
    expect(page.locator("#conversation-list li a").first).to_have_text("Trip to Lisbon")
    expect(page.locator("#conversation-list")).to_contain_text("Something else")
    assert Conversation.objects.get(pk=other.pk).title == "Something else"


def test_delete_conversations_after_confirmation(page, alice):
    keep = conversation_with_messages(alice, "Keep me")
    doomed = conversation_with_messages(alice, "Delete me")
    current = conversation_with_messages(alice, "Open one")
    page.goto(f"/chat/{current.pk}/")
    dialog = page.locator("#delete-dialog")

    doomed_item = page.locator(f"li[data-conversation-id='{doomed.pk}']")
    # With a mouse, a conversation's buttons show on hover.
    expect(doomed_item.get_by_role("button", name="Delete “Delete me”")).to_be_hidden()
    doomed_item.hover()
    doomed_item.get_by_role("button", name="Delete “Delete me”").click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete me")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(doomed_item).to_have_count(1)

    # By keyboard: the list is one Tab stop, so the buttons are not; they show while the
    # conversation has focus, and the Delete key asks the same question.
    doomed_item.locator("a").focus()
    expect(doomed_item.get_by_role("button", name="Delete “Delete me”")).to_be_visible()
    page.keyboard.press("Delete")
    expect(dialog).to_contain_text("Delete me")
    dialog.get_by_role("button", name="Delete").click()
    expect(doomed_item).to_have_count(0)
    expect(page).to_have_url(re.compile(rf"/chat/{current.pk}/$"))
    assert not Conversation.objects.filter(pk=doomed.pk).exists()

    page.reload()
    expect(page.locator("#conversation-list li")).to_have_count(2)
    expect(page.locator("#conversation-list")).not_to_contain_text("Delete me")

    # Deleting the open conversation goes to a new chat.
    page.locator(f"li[data-conversation-id='{current.pk}']").get_by_role(
        "button", name="Delete “Open one”"
    ).click()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/chat/$"))
    expect(page.locator("#chat-title")).to_have_text("New chat")
    expect(page.locator("#conversation-list li")).to_have_count(1)
    expect(page.locator("#conversation-list")).to_contain_text("Keep me")
    assert list(Conversation.objects.values_list("pk", flat=True)) == [keep.pk]


# --- Regenerate, edit, retry ------------------------------------------------------------


def test_regenerate_replaces_the_last_answer(page):
    send(page, "[[devllm delay_ms=20]] Tell me about lists.")
    first = wait_until_finished(page)
    first_id = first.get_attribute("data-message-id")
    user_id = page.locator("article.message-user").last.get_attribute("data-message-id")

    first.get_by_role("button", name="Regenerate").click()

    streaming = page.locator("article.message-assistant[data-status='streaming']")
    expect(streaming).to_have_count(1)
    expect(page.locator(f"article[data-message-id='{first_id}']")).to_have_count(0)
    answer = wait_until_finished(page)
    new_id = answer.get_attribute("data-message-id")
    assert new_id and new_id != first_id
    expect(answer.locator(".message-body li").first).to_be_visible()
    expect(page.locator("article.message-assistant")).to_have_count(1)

    page.reload()
    articles = page.locator("article.message")
    expect(articles).to_have_count(2)
    expect(articles.nth(0)).to_have_attribute("data-message-id", user_id)
    expect(articles.nth(1)).to_have_attribute("data-message-id", new_id)
    assert Message.objects.filter(pk=first_id).exists(), "the old answer is kept as a record"


def test_a_stale_tab_refuses_to_regenerate_and_reloads_instead(page, browser, site):
    send(page, "[[devllm delay_ms=5]] Tell me about tabs.")
    first_id = wait_until_finished(page).get_attribute("data-message-id")
    stale = open_elsewhere(browser, site, page.url)
    expect(last_answer(stale)).to_have_attribute("data-message-id", first_id)

    # The first tab replaces the answer; the second still shows the old one.
    last_answer(page).get_by_role("button", name="Regenerate").click()
    new_id = wait_until_finished(page).get_attribute("data-message-id")
    assert new_id != first_id
    last_answer(stale).hover()
    last_answer(stale).get_by_role("button", name="Regenerate").click()

    expect(stale.locator("#composer-error")).to_contain_text("changed since this page showed it")
    # It reloads, and shows the conversation as it is now, without a third answer.
    expect(last_answer(stale)).to_have_attribute("data-message-id", new_id, timeout=10_000)
    expect(stale.locator("article.message-assistant")).to_have_count(1)
    assert (
        Message.objects.filter(conversation__owner__username="alice", is_answer=True).count() == 2
    )
    stale.context.close()


def test_edit_and_resend_the_last_message(page):
    send(page, "[[devllm echo]] The original question")
    wait_until_finished(page)
    user = page.locator("article.message-user").last
    user.hover()
    user.get_by_role("button", name="Edit message").click()

    editor = user.get_by_role("textbox", name="Edit your message")
    expect(editor).to_be_focused()
    expect(editor).to_have_value("[[devllm echo]] The original question")
    # Cancel leaves it as it was.
    user.get_by_role("button", name="Cancel").click()
    expect(user.locator(".message-body")).to_have_text("[[devllm echo]] The original question")

    user.get_by_role("button", name="Edit message").click()
    editor = user.get_by_role("textbox", name="Edit your message")
    editor.fill("[[devllm echo]] The **edited** question")
    user.get_by_role("button", name="Save & send").click()

    answer = wait_until_finished(page)
    thread = page.locator("#thread")
    expect(page.locator("article.message-user")).to_have_count(1)
    expect(page.locator("article.message-user .message-body")).to_have_text(
        "[[devllm echo]] The **edited** question"
    )
    expect(answer.locator(".message-body strong")).to_have_text("edited")
    expect(thread).not_to_contain_text("original")

    page.reload()
    expect(page.locator("article.message")).to_have_count(2)
    expect(page.locator("#thread")).not_to_contain_text("original")
    expect(last_answer(page).locator(".message-body strong")).to_have_text("edited")


def test_an_upstream_error_is_explained_and_retry_asks_again(page):
    bodies = []
    page.on(
        "request",
        lambda request: (
            bodies.append(request.post_data_json) if request.url.endswith("/chat/stream/") else None
        ),
    )
    send(page, "[[devllm status=503]] hi")
    failed = wait_until_finished(page, "failed")
    expect(failed.locator(".message-status")).to_have_text(
        "The model's endpoint failed (HTTP 503): The development server answered 503 on "
        "purpose. Try again shortly."
    )
    failed_id = failed.get_attribute("data-message-id")
    retry = failed.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()

    retry.click()
    # A new answer streams in place of the failed one (and fails the same way: the
    # development server's directive is part of the question).
    expect(page.locator(f"article[data-message-id='{failed_id}']")).to_have_count(0)
    again = wait_until_finished(page, "failed")
    assert again.get_attribute("data-message-id") != failed_id
    assert bodies[-1]["action"] == "regenerate"
    expect(page.locator("article.message-assistant")).to_have_count(1)

    page.reload()
    reloaded = last_answer(page)
    expect(reloaded.locator(".message-status")).to_contain_text("failed (HTTP 503)")
    expect(reloaded.get_by_role("button", name="Retry")).to_be_visible()


def test_retry_after_an_unreachable_model_streams_an_answer_from_another(page):
    page.select_option("#model-select", label="A model whose server is down")
    send(page, "Are you there?")
    failed = wait_until_finished(page, "failed")
    expect(failed.locator(".message-status")).to_have_text("The model could not be reached.")

    page.select_option("#model-select", label="Dev chat")
    failed.get_by_role("button", name="Retry").click()
    answer = wait_until_finished(page)
    expect(answer.locator(".message-body code.hljs")).to_have_count(1)
    expect(answer.locator(".message-status")).to_have_count(0)
    expect(page.locator("article.message-user .message-body")).to_have_text("Are you there?")


def test_a_cut_off_answer_and_a_silent_model_are_explained(page):
    send(page, "[[devllm tokens=5]] Tell me everything.")
    answer = wait_until_finished(page)
    expect(answer.locator(".message-status")).to_have_text("The answer was cut off (length limit).")
    page.reload()
    expect(last_answer(page).locator(".message-status")).to_have_text(
        "The answer was cut off (length limit)."
    )

    send(page, "[[devllm hang]] Hello?")
    waiting = last_answer(page).get_by_role("img", name="Waiting for the answer")
    expect(waiting).to_be_visible()
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#message-input")).to_be_enabled()  # type-ahead: the box stays usable
    failed = wait_until_finished(page, "failed", timeout=20_000)
    expect(failed.locator(".message-status")).to_have_text(
        re.compile(
            r"^The model (did not answer in time|stopped sending its answer \(timed out\))\.$"
        )
    )
    expect(waiting).to_have_count(0)


# --- Reasoning -----------------------------------------------------------------------


def test_reasoning_is_open_while_it_streams_then_folds_and_reopens(page):
    page.select_option("#model-select", label="Dev reasoner")
    send(page, "[[devllm delay_ms=60]] Why is the sky blue?")

    answer = last_answer(page)
    reasoning = answer.locator("details.reasoning")
    expect(reasoning).to_be_visible()
    expect(reasoning.locator(".reasoning-body")).not_to_have_text("")
    assert reasoning.evaluate("d => d.open") is True
    assert answer.locator(".message-body").inner_text() == ""
    expect(reasoning.locator("summary")).to_have_text("Thinking")

    expect(answer.locator(".message-body")).not_to_have_text("", timeout=10_000)
    expect(reasoning).not_to_have_attribute("open", "")
    wait_until_finished(page)
    assert reasoning.evaluate("d => d.open") is False
    expect(reasoning.locator(".reasoning-body")).to_be_hidden()

    reasoning.locator("summary").click()
    expect(reasoning.locator(".reasoning-body")).to_be_visible()
    thought = reasoning.locator(".reasoning-body").inner_text()

    page.reload()
    reasoning = last_answer(page).locator("details.reasoning")
    expect(reasoning.locator(".reasoning-body")).to_be_hidden()
    reasoning.locator("summary").press("Enter")
    expect(reasoning.locator(".reasoning-body")).to_have_text(thought)


# --- Composer ------------------------------------------------------------------------


def test_the_composer_grows_and_shift_enter_adds_a_line(page):
    box = page.locator("#message-input")
    height = box.bounding_box()["height"]
    box.click()
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("third line")
    expect(box).to_have_value("first line\nsecond line\nthird line")
    assert box.bounding_box()["height"] > height + 20
    expect(page.locator("article.message")).to_have_count(0)

    page.keyboard.press("Enter")
    expect(page.locator("article.message-user .message-body")).to_have_text(
        "first line\nsecond line\nthird line"
    )
    wait_until_finished(page)
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    assert abs(box.bounding_box()["height"] - height) < 2


# --- Following the stream ----------------------------------------------------------


def test_the_view_follows_the_stream_until_the_reader_scrolls_up(page):
    page.set_viewport_size({"width": 1000, "height": 600})
    paragraphs = "\n\n".join(f"Paragraph number {n} of a long answer." for n in range(80))
    send(page, f"[[devllm echo delay_ms=15]] {paragraphs}")
    thread = page.locator("#thread")
    streaming = page.locator("article.message-assistant[data-status='streaming']")

    def distance_from_bottom():
        return thread.evaluate("t => t.scrollHeight - t.scrollTop - t.clientHeight")

    expect(streaming.locator(".message-body p").nth(25)).to_be_attached(timeout=10_000)
    assert thread.evaluate("t => t.scrollHeight > t.clientHeight * 1.5")
    assert distance_from_bottom() < 50, "the view does not follow the stream"

    thread.hover()
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(200)
    held = thread.evaluate("t => t.scrollTop")
    page.wait_for_timeout(500)
    expect(streaming).to_have_count(1)  # still streaming, and yet the view stayed put
    assert abs(thread.evaluate("t => t.scrollTop") - held) < 2
    assert distance_from_bottom() > 200

    jump = page.get_by_role("button", name="Jump to the latest message")
    expect(jump).to_be_visible()
    jump.click()
    wait_until_finished(page, timeout=30_000)
    assert distance_from_bottom() < 50
    expect(jump).to_be_hidden()


# --- Screenshots ---------------------------------------------------------------------


def test_screenshots_of_the_chat_in_light_and_dark_on_desktop_and_phone(page, alice):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for title in ("Weekend trip to Lisbon", "Sourdough starter schedule", "Fix flaky CI test"):
        conversation_with_messages(alice, title)
    page.reload()
    send(page, "[[devllm delay_ms=1]] How do Python lists behave?")
    wait_until_finished(page)
    page.select_option("#model-select", label="Dev reasoner")
    send(page, "[[devllm delay_ms=1]] How do I serve HTTP in Go?")
    answer = wait_until_finished(page)
    answer.locator("details.reasoning summary").click()
    page.mouse.move(0, 0)

    def shoot(name):
        page.locator("#thread").evaluate("t => { t.scrollTop = t.scrollHeight; }")
        page.wait_for_timeout(100)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    shots = []
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": 1280, "height": 800})
        shots.append(shoot(f"chat-desktop-{scheme}"))
        page.set_viewport_size({"width": 390, "height": 844})
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
        shots.append(shoot(f"chat-phone-{scheme}"))

        # On a phone the conversations are a drawer behind a button.
        page.get_by_role("button", name="Show conversations").click()
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
        page.wait_for_timeout(300)
        shots.append(shoot(f"chat-phone-sidebar-{scheme}"))
        page.keyboard.press("Escape")
        expect(page.get_by_role("button", name="Show conversations")).to_be_focused()
        expect(page.locator("#sidebar")).not_to_be_in_viewport()

    for path in shots:
        assert path.stat().st_size > 10_000, f"{path.name} looks empty"


# The selected model's name as its <select> draws it: whether the box is wide enough.
MODEL_NAME_FITS = """(select) => {
  const probe = document.createElement("span");
  const style = getComputedStyle(select);
  probe.style.font = style.font;
  probe.style.position = "absolute";
  probe.style.whiteSpace = "nowrap";
  probe.textContent = select.selectedOptions[0].textContent;
  document.body.append(probe);
  const needed = probe.getBoundingClientRect().width;
  probe.remove();
  // The text, its padding and the arrow (about 1.5 em) must fit in the box.
  const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return needed + 1.5 * parseFloat(style.fontSize) <= room;
}"""


def test_on_a_phone_one_bar_heads_the_chat_and_the_account_links_are_in_the_drawer(page):
    page.set_viewport_size({"width": 390, "height": 844})

    bars = page.locator("header").evaluate_all(
        "headers => headers.filter(h => h.offsetHeight).map(h => h.offsetHeight)"
    )
    assert len(bars) == 1 and bars[0] <= 56, bars
    assert page.locator("#model-select").evaluate(MODEL_NAME_FITS)
    expect(page.get_by_label("Model")).to_be_visible()  # still named for screen readers

    page.get_by_role("button", name="Show conversations").click()
    drawer = page.locator("#sidebar")
    keys = drawer.get_by_role("link", name="API keys")
    expect(keys).to_be_in_viewport()
    assert keys.bounding_box()["height"] >= 44
    expect(drawer.get_by_role("button", name="Log out")).to_be_in_viewport()

    # On a desktop the header is back, its link a target of 24 px at least.
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 1280, "height": 800})
    header_keys = page.locator(".site-header").get_by_role("link", name="API keys")
    expect(header_keys).to_be_visible()
    assert header_keys.bounding_box()["height"] >= 24
    expect(drawer.locator(".sidebar-account")).to_be_hidden()


def test_a_stale_tab_keeps_the_message_it_could_not_send_through_its_reload(page, browser, site):
    send(page, "[[devllm tokens=3]] Tell me about tabs.")
    wait_until_finished(page)
    stale = open_elsewhere(browser, site, page.url)
    expect(stale.locator("article.message-assistant")).to_have_count(1)

    # The first tab goes on; the second, stale, tries to send after a turn it never saw.
    send(page, "[[devllm tokens=3]] And windows?")
    wait_until_finished(page)
    draft = "A long message I typed with care, which must not be lost."
    stale.fill("#message-input", draft)
    stale.press("#message-input", "Enter")

    expect(stale.locator("#composer-error")).to_contain_text("changed since this page showed it")
    # It reloads to show the conversation as it is, with the message still in the box.
    expect(stale.locator("article.message-assistant")).to_have_count(2, timeout=10_000)
    expect(stale.locator("#message-input")).to_have_value(draft)
    stale.context.close()


def test_drafts_are_kept_per_conversation_through_a_reload_and_go_when_sent(page):
    send(page, "[[devllm tokens=3]] First chat.")
    wait_until_finished(page)
    first = page.url
    page.fill("#message-input", "half a thought for the first chat")

    page.goto("/chat/")  # a new chat has a draft of its own
    expect(page.locator("#message-input")).to_have_value("")
    page.fill("#message-input", "an opening for a new chat")
    page.reload()
    expect(page.locator("#message-input")).to_have_value("an opening for a new chat")

    page.goto(first)
    expect(page.locator("#message-input")).to_have_value("half a thought for the first chat")
    page.press("#message-input", "Enter")  # sent: the draft goes
    wait_until_finished(page)
    page.reload()
    expect(page.locator("#message-input")).to_have_value("")


def test_a_turn_sent_in_one_tab_appears_live_in_another_showing_that_chat(page):
    send(page, "[[devllm tokens=3]] First.")
    wait_until_finished(page)
    other = page.context.new_page()
    other.goto(page.url)
    expect(other.locator("article.message-assistant")).to_have_count(1)
    other.evaluate("window.__sameDocument = true")  # gone if the tab reloads

    send(page, "[[devllm echo delay_ms=60]] one two three four five six seven eight")

    shown = other.locator("article.message-assistant").last
    expect(other.locator("article.message-user").last.locator(".message-body")).to_have_text(
        "[[devllm echo delay_ms=60]] one two three four five six seven eight"
    )
    expect(shown).to_have_attribute("data-status", "streaming")
    expect(shown).to_have_attribute("data-status", "completed", timeout=15_000)
    expect(shown.locator(".message-body")).to_have_text("one two three four five six seven eight")
    assert other.evaluate("window.__sameDocument") is True
    # Not stale: its own next message continues the thread.
    other.fill("#message-input", "[[devllm tokens=2]] From the other tab.")
    other.press("#message-input", "Enter")
    expect(other.locator("article.message-assistant").last).to_have_attribute(
        "data-status", "completed", timeout=15_000
    )
    expect(other.locator("#composer-error")).to_be_hidden()
    other.close()
