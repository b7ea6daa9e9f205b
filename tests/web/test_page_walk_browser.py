"""A walk through the whole chat page as a person uses it, in Chromium, on a desktop and a
phone, light and dark: send, watch it stream, reload mid-answer, lose the connection,
regenerate, switch versions, stop with Escape, open the drawer. The page reaches the site
through a TCP proxy the test cuts. Screenshots of each step go to artifacts/screenshots/.
"""

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Message
from tests.conftest import log_in_browser
from tests.servers import ROOT
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = ROOT / "artifacts" / "screenshots" / "walk"
END_MS = 60_000
DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
MARKDOWN = (
    "[[devllm echo delay_ms=20]] ## A plan\n\n"
    + "Some **bold** words and `code`, then a list:\n\n"
    + "".join(f"- item {n} of the list\n" for n in range(1, 13))
)


def words(count: int, delay_ms: int) -> str:
    return f"[[devllm echo delay_ms={delay_ms}]] " + " ".join(f"w{i}" for i in range(count))


@pytest.fixture
def walk(browser, site, alice, request):
    device, scheme = request.param
    proxy = TcpProxy(int(site.url.rsplit(":", 1)[1]))
    context = browser.new_context(base_url=proxy.url, color_scheme=scheme, **DEVICES[device])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    folder = SCREENSHOTS / f"{device}-{scheme}"
    folder.mkdir(parents=True, exist_ok=True)
    yield page, proxy, device, folder
    context.close()
    proxy.close()
    assert errors == [], f"the page threw: {errors}"


def shoot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"))


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def last_answer(page: Page):
    return page.locator("article.message-assistant:not([hidden])").last


def saved_answers(**filters):
    return Message.objects.filter(user__username="alice", is_answer=True, **filters)


@pytest.mark.parametrize(
    "walk",
    [(d, s) for d in DEVICES for s in ("light", "dark")],
    ids=lambda p: "-".join(p),
    indirect=True,
)
def test_a_walk_through_the_chat_page(walk):
    page, proxy, device, folder = walk
    shoot(page, folder, "01-new-chat")

    # Send: the answer streams in, rendered, and ends completed.
    send(page, MARKDOWN)
    answer = last_answer(page)
    expect(answer.locator(".message-body li").first).to_be_visible(timeout=10_000)
    shoot(page, folder, "02-streaming")
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    expect(answer.locator("h2")).to_have_text("A plan")
    expect(answer.locator("strong")).to_have_text("bold")
    shoot(page, folder, "03-answered")

    # Reload mid-answer: the answer is still there, growing, and ends.
    send(page, words(120, 20))  # 2.4 s: the reload lands mid-answer
    expect(last_answer(page).locator(".message-body")).to_contain_text("w10", timeout=10_000)
    page.reload()
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    expect(answer.locator(".message-body")).to_contain_text("w119")

    # Lose the connection for a few seconds: the page follows the answer to its end.
    send(page, words(80, 60))
    answer = last_answer(page)
    expect(answer.locator(".message-body")).to_contain_text("w5", timeout=10_000)
    proxy.cut()
    page.wait_for_timeout(3_000)
    proxy.restore()
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    expect(answer.locator(".message-body")).to_contain_text("w79")
    assert saved_answers(status="completed").count() == 3
    shoot(page, folder, "04-after-reload-and-drop")

    # Regenerate: a second version, and the first a click away.
    answer.hover()
    answer.get_by_role("button", name="Regenerate").click()
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    expect(answer.locator(".version-status")).to_have_text("2 / 2")
    shoot(page, folder, "05-two-versions")
    answer.get_by_role("button", name="Previous version").click()
    expect(last_answer(page).locator(".version-status")).to_have_text("1 / 2")

    # Escape a moment after Enter stops the answer, on the server too.
    send(page, words(60, 60))
    page.wait_for_timeout(30)
    page.keyboard.press("Escape")
    expect(last_answer(page)).to_have_attribute("data-status", "stopped")
    expect(page.locator("#message-input")).to_be_enabled()
    shoot(page, folder, "06-stopped")
    wait_for(lambda: saved_answers(status="streaming").count() == 0, timeout=10)
    assert saved_answers(status="stopped").count() == 1

    if device == "phone":
        page.get_by_role("button", name="Show conversations").click()
        expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
        page.wait_for_timeout(300)
        shoot(page, folder, "07-drawer")
        page.keyboard.press("Escape")
        expect(page.locator("#sidebar")).not_to_be_in_viewport()
    for path in folder.glob("*.png"):
        assert path.stat().st_size > 5_000, f"{path.name} looks empty"
