"""axe-core on every page people use, in light and dark: no serious or critical violation.

axe-core comes from npm (a dev dependency, never served by the site): each browser context
gets node_modules/axe-core/axe.min.js as an init script, which the page's strict CSP does not
govern. The pages hold what is hardest to get right: a reasoning answer, a highlighted code
block and a failed answer (retried, so it has versions), streamed through the real site from
the development LLM server;
a key shown once and a revoked key; the admin transcript of the same conversation; and the
dialogs opened over them.
"""

import pytest
from playwright.sync_api import Page, expect

from conversations.models import ApiKey, Conversation, Message
from tests.conftest import log_in_browser
from tests.servers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

AXE_SOURCE = (ROOT / "node_modules" / "axe-core" / "axe.min.js").read_text()
SCHEMES = ("light", "dark")
BLOCKING = ("serious", "critical")

# Each violation that blocks, with where it is, so a failure says what to fix.
RUN_AXE = """async (selector) => {
  const results = await axe.run(selector ? document.querySelector(selector) : document,
                                {resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`),
  }));
}"""

CODE_ANSWER = """[[devllm echo]] A function:

```python
def area(radius: float) -> float:
    # The area of a circle.
    return 3.14159 * radius ** 2  # "pi" is close enough
```"""


@pytest.fixture
def new_context(browser, site):
    contexts = []

    def make(**options):
        context = browser.new_context(
            base_url=site.url, viewport={"width": 1280, "height": 800}, **options
        )
        context.add_init_script(script=AXE_SOURCE)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


# After a colour-scheme switch, wait for colour transitions (the admin's links fade) to end,
# or axe would measure a colour halfway.
SETTLE = """async () => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const finite = document.getAnimations()
    .filter((animation) => animation.effect?.getTiming().iterations !== Infinity);
  await Promise.all(finite.map((animation) => animation.finished.catch(() => null)));
}"""


def blocking_violations(page: Page, where: str, *, selector: str | None = None) -> list[str]:
    """Run axe in each colour scheme; describe every serious or critical violation."""
    found = []
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        page.evaluate(SETTLE)
        for violation in page.evaluate(RUN_AXE, selector):
            if violation["impact"] in BLOCKING:
                nodes = "\n    ".join(violation["nodes"])
                found.append(
                    f"{where}, {scheme}: {violation['id']} ({violation['impact']}): "
                    f"{violation['help']}\n    {nodes}"
                )
    return found


def assert_no_blocking_violations(found: list[str]) -> None:
    assert not found, "axe found serious or critical violations:\n" + "\n".join(found)


def send(page: Page, text: str, status: str = "completed") -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", status, timeout=15_000)
    expect(page.locator("#thread")).to_have_attribute("aria-busy", "false")


def test_the_login_page_passes_axe_in_light_and_dark(new_context):
    page = new_context().new_page()
    page.goto("/accounts/login/")
    found = blocking_violations(page, "login")

    # With an error shown too.
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong-password")
    page.click("[type=submit]")
    expect(page.locator(".form-errors")).to_be_visible()
    found += blocking_violations(page, "login with an error")

    assert_no_blocking_violations(found)


def test_the_chat_page_and_its_admin_transcript_pass_axe_in_light_and_dark(
    new_context, alice, make_user
):
    page = new_context().new_page()
    log_in_browser(page, "alice")
    page.select_option("#model-select", label="Dev reasoner")
    send(page, "Why is the sky blue?")
    send(page, CODE_ANSWER)
    send(page, "[[devllm status=500]] And now?", status="failed")
    # Retry fails again: the failed answer now has an earlier version to switch to.
    page.locator("article.message-assistant").last.get_by_role("button", name="Retry").click()
    expect(page.locator("article.message-assistant").last).to_have_attribute(
        "data-status", "failed", timeout=15_000
    )
    expect(page.locator("#thread")).to_have_attribute("aria-busy", "false")
    conversation = Conversation.objects.get(owner=alice)
    answers = Message.objects.filter(conversation=conversation, role="assistant")
    assert answers.exclude(reasoning="").exists() and answers.filter(status="failed").exists()

    page.reload()
    expect(page.locator("html.chat-ready")).to_have_count(1)
    thread = page.locator("#thread")
    expect(thread.locator(".code-block .hljs-keyword").first).to_be_visible()
    expect(thread.locator(".message[data-status='failed'] .message-status")).to_be_visible()
    expect(thread.locator(".message-versions")).to_be_visible()
    for details in thread.locator("details.reasoning").all():
        details.locator("summary").click()  # open: its text is checked too
    found = blocking_violations(page, "chat")
    page.set_viewport_size({"width": 390, "height": 844})
    found += blocking_violations(page, "chat at phone width")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(page.locator("#shortcuts-dialog")).to_be_visible()
    found += blocking_violations(page, "chat, help dialog", selector="#shortcuts-dialog")

    make_user("root", is_staff=True, is_superuser=True)
    admin = new_context().new_page()
    log_in_browser(admin, "root", path="/admin/login/")
    admin.goto(f"/admin/conversations/conversation/{conversation.pk}/change/")
    expect(admin.locator(".transcript .code-block .hljs-keyword").first).to_be_visible()
    for details in admin.locator(".transcript details").all():
        details.locator("summary").click()
    found += blocking_violations(admin, "admin transcript")

    assert_no_blocking_violations(found)


def test_the_api_keys_page_passes_axe_in_light_and_dark(new_context, alice):
    page = new_context().new_page()
    log_in_browser(page, "alice")
    page.goto("/settings/api-keys/")
    for name in ("old script", "laptop"):
        page.fill("#key-name", name)
        page.click(".key-create [type=submit]")
        expect(page.locator(".key-table")).to_contain_text(name)
    old = ApiKey.objects.get(user=alice, name="old script")
    page.locator(f"tr[data-key-id='{old.pk}'] .key-revoke button").click()
    dialog = page.locator("#revoke-dialog")
    expect(dialog).to_be_visible()
    found = blocking_violations(page, "API keys, revoke dialog", selector="#revoke-dialog")
    dialog.get_by_role("button", name="Revoke").click()
    expect(page.locator(f"tr[data-key-id='{old.pk}']")).to_contain_text("Revoked")

    # A key shown once beside a revoked one; and the page with an error.
    page.fill("#key-name", "server")
    page.click(".key-create [type=submit]")
    expect(page.locator("#new-key-value")).to_be_visible()
    found += blocking_violations(page, "API keys")
    page.locator("#key-name").evaluate("input => input.removeAttribute('maxlength')")
    page.fill("#key-name", "x" * 200)  # too long a name
    page.click(".key-create [type=submit]")
    expect(page.locator(".form-errors")).to_be_visible()
    found += blocking_violations(page, "API keys with an error")

    assert_no_blocking_violations(found)
