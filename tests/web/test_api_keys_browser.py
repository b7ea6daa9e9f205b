"""The API keys page in a real browser: POST-redirect-GET, Copy, and Revoke that asks first."""

import pytest
from playwright.sync_api import Page, expect

from conversations.accounts.apikeys import hash_key
from conversations.models import ApiKey
from tests.conftest import logged_in_page

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, site, alice) -> Page:
    with logged_in_page(
        browser,
        site.url,
        "alice",
        permissions=["clipboard-read", "clipboard-write"],
        viewport={"width": 1280, "height": 800},
    ) as page:
        page.goto("/settings/api-keys/")
        yield page


def create_key(page: Page, name: str) -> str:
    page.fill("#key-name", name)
    page.click(".key-create [type=submit]")
    shown = page.locator("#new-key-value")
    expect(shown).to_be_visible()
    return shown.input_value()


def test_reloading_after_creating_a_key_creates_no_other_and_hides_it(page, alice):
    raw_key = create_key(page, "laptop")

    assert page.url.endswith("/settings/api-keys/")  # redirected: nothing in the URL
    assert ApiKey.objects.get(user=alice).key_hash == hash_key(raw_key)
    page.reload()
    expect(page.locator(".key-table")).to_contain_text("laptop")
    expect(page.locator("#new-key-value")).to_have_count(0)
    assert raw_key not in page.content()
    assert ApiKey.objects.filter(user=alice).count() == 1


def test_the_copy_button_copies_the_key_shown_once(page):
    raw_key = create_key(page, "script")

    copy = page.locator("#new-key-copy")
    expect(copy).to_have_accessible_name("Copy")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw_key
    expect(copy).to_have_text("Copy", timeout=4_000)


def test_revoke_asks_first_and_cancel_or_escape_keeps_the_key(page, alice, make_api_key):
    make_api_key(alice, name="build server")
    page.reload()
    key = ApiKey.objects.get(user=alice)
    revoke = page.get_by_role("button", name="Revoke build server")
    expect(revoke).to_have_class("danger-button")
    dialog = page.locator("#revoke-dialog")

    revoke.click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("build server")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    revoke.focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    key.refresh_from_db()
    assert key.is_active

    # By keyboard: Enter opens the dialog on Cancel; Tab to Revoke, Enter revokes.
    revoke.focus()
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Revoke")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(f"tr[data-key-id='{key.pk}']")).to_contain_text("Revoked")
    key.refresh_from_db()
    assert not key.is_active
