"""The chat page by keyboard, in a real browser: the message box is focused when a chat
opens, the skip link goes to it, and the shortcuts (listed in a help dialog) work."""

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import conversation_with_messages, log_in_browser

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def logged_in(browser, site, alice):
    contexts = []

    def make(**options) -> Page:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(base_url=site.url, **options)
        contexts.append(context)
        page = context.new_page()
        log_in_browser(page, "alice")
        page.wait_for_url("**/chat/")
        return page

    yield make
    for context in contexts:
        context.close()


def test_the_message_box_is_focused_when_a_chat_opens_on_a_desktop(logged_in, alice):
    page = logged_in()
    expect(page.locator("#message-input")).to_be_focused()  # a new chat

    conversation = conversation_with_messages(alice, "Earlier")
    page.goto(f"/chat/{conversation.pk}/")
    expect(page.locator("html.chat-ready")).to_have_count(1)
    expect(page.locator("#message-input")).to_be_focused()
    page.keyboard.type("typed at once")
    expect(page.locator("#message-input")).to_have_value("typed at once")


def test_a_phone_does_not_get_its_keyboard_popped_up_but_the_skip_link_works(logged_in):
    page = logged_in(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    expect(page.locator("html.chat-ready")).to_have_count(1)
    expect(page.locator("#message-input")).not_to_be_focused()

    # The skip link is the first Tab stop and goes past the header straight to the box.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#message-input")).to_be_focused()


def test_the_skip_link_goes_to_the_message_box(logged_in):
    page = logged_in()
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_have_attribute("href", "#message-input")
    skip.focus()
    expect(skip).to_be_in_viewport()

    page.keyboard.press("Enter")
    expect(page.locator("#message-input")).to_be_focused()
    assert page.url.endswith("/chat/")  # no #fragment left behind


def test_shortcuts_open_a_new_chat_focus_the_box_and_show_help(logged_in, alice):
    conversation = conversation_with_messages(alice, "Earlier")
    page = logged_in()
    page.goto(f"/chat/{conversation.pk}/")
    box = page.locator("#message-input")
    expect(page.locator("html.chat-ready")).to_have_count(1)

    # Shift+Escape comes back to the box from anywhere.
    page.locator("#model-select").focus()
    page.keyboard.press("Shift+Escape")
    expect(box).to_be_focused()

    # Ctrl+/ (or ? outside a text field, or the button) opens the help; Escape closes it.
    help_dialog = page.locator("#shortcuts-dialog")
    page.keyboard.press("Control+/")
    expect(help_dialog).to_be_visible()
    for listed in ("New chat", "Go to the message box", "Send", "New line", "Stop the answer"):
        expect(help_dialog).to_contain_text(listed)
    for key in ("F2", "Delete", "Shift", "Esc"):
        expect(help_dialog.locator("kbd", has_text=key).first).to_be_visible()
    expect(help_dialog.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()

    box.fill("")
    box.press("?")  # typing a question mark is just typing
    expect(box).to_have_value("?")
    expect(help_dialog).to_be_hidden()
    page.locator("#new-chat").focus()
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    page.keyboard.press("Enter")  # Close
    expect(help_dialog).to_be_hidden()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(help_dialog).to_be_visible()
    help_dialog.get_by_role("button", name="Close").click()

    # Ctrl+Shift+O opens a new chat, ready to type in.
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url("**/chat/")
    expect(page.locator("#chat-title")).to_have_text("New chat")
    expect(page.locator("#message-input")).to_be_focused()


def test_shift_escape_while_an_answer_streams_focuses_the_box_without_stopping_it(logged_in):
    page = logged_in()
    page.fill("#message-input", "[[devllm tokens=40 delay_ms=50]] Tell me a story")
    page.press("#message-input", "Enter")
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "streaming")

    page.locator("#model-select").focus()
    page.keyboard.press("Shift+Escape")
    expect(page.locator("#message-input")).to_be_focused()
    expect(answer).to_have_attribute("data-status", "completed", timeout=15_000)
