"""An answer the server could not finish: a restart mid-answer ends it "interrupted".

On SIGTERM a chatsite process drains: running answers may finish for SHUTDOWN_GRACE_SECONDS,
then the rest are ended with an `error` event saying the server is restarting, and saved as
interrupted with the text streamed so far. The chat page marks such an answer
"Interrupted: …" and offers Retry, both as it streams and as the server renders it later.

The prompts use devllm's `echo` flag, so the answer is plain words (one Markdown paragraph)
and the page's text can be compared with the saved content exactly.
"""

import signal
import subprocess
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from conversations.models import Conversation, Message
from tests.conftest import log_in_browser
from tests.servers import ServerProcess, start_site
from tests.waiting import wait_for
from tests.web.test_resume_browser import body, last_answer, long_prompt, send

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Generous: the machine running these is small and shared.
END_MS = 60_000
SAVED_SECONDS = 60.0
EXIT_SECONDS = 30
INTERRUPTED_ERROR = "The server stopped while answering."


@pytest.fixture
def own_site(site_env, server_logs) -> Iterator[ServerProcess]:
    """A chatsite process of the test's own, free to be sent SIGTERM."""
    server = start_site(server_logs, {**site_env, "SHUTDOWN_GRACE_SECONDS": "1"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, own_site, alice) -> Iterator[Page]:
    context = browser.new_context(base_url=own_site.url)
    page = context.new_page()
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    yield page
    context.close()


def newest_saved_answer(user, after: int = 0) -> Message:
    """The user's newest answer (newer than message `after`) once it is saved as ended."""

    def saved() -> Message | None:
        answers = Message.objects.filter(user=user, is_answer=True, pk__gt=after)
        newest = answers.order_by("pk").last()
        return newest if newest and newest.status != Message.Status.STREAMING else None

    return wait_for(saved, timeout=SAVED_SECONDS, interval=0.1)


def test_a_restart_mid_answer_ends_it_interrupted_keeping_the_words_so_far(page, own_site, alice):
    prompt = long_prompt(words=100, delay_ms=150)
    send(page, prompt)
    answer = last_answer(page)
    expect(body(answer)).to_contain_text("w3", timeout=END_MS)
    expect(answer).to_have_attribute("data-status", "streaming")
    before = body(answer).inner_text()

    own_site.process.send_signal(signal.SIGTERM)

    expect(answer).to_have_attribute("data-status", "interrupted", timeout=END_MS)
    status = answer.locator(".message-status")
    expect(status).to_contain_text("Interrupted", timeout=END_MS)
    expect(status).to_contain_text("restarting")
    shown = body(answer).inner_text()
    words = prompt.split("]] ", 1)[1]
    # The words streamed so far stay on the page: a beginning of the answer, not all of it.
    assert shown.startswith(before) and shown.startswith("w1 w2 w3"), (before, shown)
    assert words.startswith(shown) and len(shown) < len(words), shown
    expect(answer.locator(".retry-button")).to_be_visible()
    expect(answer.locator('[data-action="regenerate"]')).to_have_count(0)

    saved = newest_saved_answer(alice)
    assert saved.status == Message.Status.INTERRUPTED
    assert saved.error == INTERRUPTED_ERROR
    assert " ".join(saved.content.split()) == " ".join(shown.split())
    assert saved.content == shown

    try:
        own_site.process.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the site did not exit within {EXIT_SECONDS} s of SIGTERM")


def test_an_interrupted_answer_is_shown_after_a_reload_and_retry_completes_it(page, alice):
    conversation = Conversation.objects.create(owner=alice, title="Cut short", model="dev/dev-chat")
    Message.objects.create(
        conversation=conversation,
        user=alice,
        role=Message.Role.USER,
        content="[[devllm echo]] Partial words and then some",
        request_id="interrupted-0001",
    )
    interrupted = Message.objects.create(
        conversation=conversation,
        user=alice,
        role=Message.Role.ASSISTANT,
        is_answer=True,
        status=Message.Status.INTERRUPTED,
        error=INTERRUPTED_ERROR,
        content="Partial words",
        model="dev/dev-chat",
        request_id="interrupted-0001",
    )

    page.goto(conversation.get_absolute_url())

    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "interrupted")
    expect(body(answer)).to_have_text("Partial words")
    expect(answer.locator(".message-status")).to_have_text(f"Interrupted: {INTERRUPTED_ERROR}")
    retry = answer.locator(".retry-button")
    expect(retry).to_be_visible()
    expect(answer.locator('[data-action="regenerate"]')).to_have_count(0)

    retry.click()

    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    expect(body(answer)).to_have_text("Partial words and then some")
    expect(answer.locator(".message-status")).to_have_count(0)
    expect(page.locator("article.message-assistant")).to_have_count(1)
    expect(page.locator(".retry-button")).to_have_count(0)

    saved = newest_saved_answer(alice, after=interrupted.pk)
    assert saved.status == Message.Status.COMPLETED
    assert saved.content == "Partial words and then some"
    interrupted.refresh_from_db()
    assert interrupted.superseded_at is not None
