"""An answer outlives the page that asked for it: reloads, closed tabs, second tabs and a
native EventSource all find it, growing, through GET /api/turns/<request_id>/events.

The prompts use devllm's `echo` flag, so the answer is plain words (one Markdown paragraph)
and the page's text can be compared with the saved content exactly.
"""

import re
import time

import pytest
from playwright.sync_api import Locator, Page, expect

from conversations.models import Message
from tests.conftest import log_in, log_in_browser
from tests.servers import devllm_record
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

# Generous: the machine running these is small and shared.
END_MS = 60_000
SAVED_SECONDS = 60.0
CONVERSATION_URL = re.compile(r"/chat/(\d+)/$")


def long_prompt(words: int = 100, delay_ms: int = 80) -> str:
    """A prompt whose answer is `words` distinct words, one every `delay_ms`."""
    return f"[[devllm echo delay_ms={delay_ms}]] " + " ".join(f"w{i}" for i in range(1, words + 1))


@pytest.fixture
def context(browser, site, alice):
    context = browser.new_context(base_url=site.url)
    yield context
    context.close()


@pytest.fixture
def page(context) -> Page:
    page = context.new_page()
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    return page


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def last_answer(page: Page) -> Locator:
    return page.locator("article.message-assistant").last


def body(article: Locator) -> Locator:
    return article.locator(".message-body")


def conversation_id(page: Page) -> int:
    """The conversation the page shows (the page puts it in the URL once the turn starts)."""
    page.wait_for_url(CONVERSATION_URL)
    return int(CONVERSATION_URL.search(page.url).group(1))


def saved_answer(conversation: int) -> Message:
    return Message.objects.get(conversation_id=conversation, is_answer=True)


def wait_until_saved(conversation: int) -> Message:
    """The conversation's answer once it is saved as ended."""
    return wait_for(
        lambda: (
            Message.objects.filter(conversation_id=conversation, is_answer=True)
            .exclude(status=Message.Status.STREAMING)
            .first()
        ),
        timeout=SAVED_SECONDS,
        interval=0.1,
    )


def sample_lengths(*articles: Locator, timeout: float = 60.0) -> list[list[int]]:
    """Sample each article's text length until none is streaming any more."""
    samples: list[list[int]] = [[] for _ in articles]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        streaming = False
        for lengths, article in zip(samples, articles, strict=True):
            streaming |= article.get_attribute("data-status") == "streaming"
            lengths.append(len(body(article).inner_text()))
        if not streaming:
            break
        time.sleep(0.1)
    return samples


def assert_grew(lengths: list[int], who: str = "the answer") -> None:
    shown = [n for n in lengths if n > 0]
    seen = f"{len(lengths)} samples, distinct lengths {sorted(set(lengths))[:20]}"
    assert len(set(shown)) >= 3, f"{who} did not grow while streaming: {seen}"
    assert shown[-1] > shown[0], f"{who} did not grow while streaming: {seen}"


def assert_finished_as_saved(article: Locator, conversation: int) -> Message:
    expect(article).to_have_attribute("data-status", "completed", timeout=END_MS)
    answer = wait_until_saved(conversation)
    assert answer.status == Message.Status.COMPLETED
    assert answer.content.startswith("w1 w2 ")
    expect(body(article)).to_have_text(answer.content)
    assert body(article).inner_text() == answer.content
    return answer


def test_a_reload_mid_answer_reattaches_and_shows_it_growing_to_the_end(page, devllm):
    send(page, long_prompt())
    conversation = conversation_id(page)
    expect(body(last_answer(page))).not_to_have_text("", timeout=END_MS)

    page.reload()

    answer = last_answer(page)
    # Not an empty bubble marked finished: the page picked the answer up where it runs.
    assert answer.get_attribute("data-status") == "streaming"
    assert answer.get_attribute("data-request-id")
    [lengths] = sample_lengths(answer)
    assert_grew(lengths)
    saved = assert_finished_as_saved(answer, conversation)
    assert saved.content == long_prompt().split("]] ", 1)[1]
    # The model saw one whole request: the reload was not a hang-up on its side.
    record = wait_for(
        lambda: (r := devllm_record(devllm, saved.request_id))["finished"] and r, timeout=10
    )
    assert record["client_disconnected"] is False


def test_an_answer_left_by_a_closed_tab_is_saved_whole_and_shown_later(context, page):
    send(page, long_prompt(words=60, delay_ms=50))
    conversation = conversation_id(page)
    url = page.url
    expect(body(last_answer(page))).not_to_have_text("", timeout=END_MS)
    shown = body(last_answer(page)).inner_text()

    page.close()

    answer = wait_until_saved(conversation)
    assert answer.status == Message.Status.COMPLETED
    assert answer.content.startswith(shown) and len(answer.content) > len(shown)
    later = context.new_page()
    later.goto(url)
    article = last_answer(later)
    expect(article).to_have_attribute("data-status", "completed")
    assert body(article).inner_text() == answer.content


def test_two_tabs_on_one_conversation_both_show_the_answer_growing(context, page):
    send(page, long_prompt())
    conversation = conversation_id(page)
    expect(body(last_answer(page))).not_to_have_text("", timeout=END_MS)

    other = context.new_page()
    other.goto(page.url)

    first, second = last_answer(page), last_answer(other)
    assert second.get_attribute("data-status") == "streaming"
    lengths_first, lengths_second = sample_lengths(first, second)
    assert_grew(lengths_second, "the second tab's answer")
    assert_grew(lengths_first, "the first tab's answer")
    saved = assert_finished_as_saved(second, conversation)
    assert_finished_as_saved(first, conversation)
    assert body(first).inner_text() == body(second).inner_text() == saved.content


def test_leaving_for_another_chat_and_coming_back_reattaches(page):
    send(page, "[[devllm echo]] an earlier question")
    expect(last_answer(page)).to_have_attribute("data-status", "completed", timeout=END_MS)
    earlier = conversation_id(page)
    page.click("#new-chat")
    page.wait_for_url("**/chat/")
    send(page, long_prompt())
    conversation = conversation_id(page)
    assert conversation != earlier
    expect(body(last_answer(page))).not_to_have_text("", timeout=END_MS)

    page.click(f'#conversation-list li[data-conversation-id="{earlier}"] a.conversation-link')
    page.wait_for_url(f"**/chat/{earlier}/")
    expect(last_answer(page)).to_have_attribute("data-status", "completed")
    expect(body(last_answer(page))).to_have_text("an earlier question")
    page.go_back()
    page.wait_for_url(f"**/chat/{conversation}/")

    answer = last_answer(page)
    [lengths] = sample_lengths(answer)
    assert_grew(lengths)
    assert_finished_as_saved(answer, conversation)
    expect(page.locator("article.message-assistant")).to_have_count(1)


COLLECT_WITH_EVENT_SOURCE = """
(url) => new Promise((resolve, reject) => {
  const events = [];
  const dropped = [];
  const source = new EventSource(url);
  const timer = setTimeout(() => {
    source.close();
    reject(new Error(`no final event within 60 s: ${JSON.stringify(events)}`));
  }, 60000);
  const end = () => {
    clearTimeout(timer);
    source.close();
    resolve({ events, dropped });
  };
  for (const name of ["message", "start", "reasoning", "delta", "done"]) {
    source.addEventListener(name, (e) => {
      events.push({ name, id: e.lastEventId, data: JSON.parse(e.data) });
      if (name === "done") {
        end();
      }
    });
  }
  source.addEventListener("error", (e) => {
    if (typeof e.data === "string") {  // the site's `error` event, not a lost connection
      events.push({ name: "error", id: e.lastEventId, data: JSON.parse(e.data) });
      end();
    } else {
      dropped.push(source.readyState);  // EventSource reconnects with Last-Event-ID
    }
  });
})
"""


def test_a_native_event_source_follows_a_turn_to_its_end(page, site):
    request_id = "event-source-0001"
    client = log_in(site.url, "alice")
    payload = {"message": long_prompt(words=60, delay_ms=50)}
    with client.stream(
        "POST", "/chat/stream/", json=payload, headers={"X-Request-ID": request_id}
    ) as response:
        assert response.status_code == 200
        read = b""
        for chunk in response.iter_raw():
            read += chunk
            if b"event: start" in read:
                break  # hang up: the turn goes on without this reader

    result = page.evaluate(COLLECT_WITH_EVENT_SOURCE, f"/api/turns/{request_id}/events")

    events = result["events"]
    ids = [int(event["id"]) for event in events]
    assert ids == list(range(1, len(events) + 1)), f"ids {ids} (reconnects: {result['dropped']})"
    assert events[0]["name"] == "start"
    assert events[0]["data"]["request_id"] == request_id
    assert events[-1]["name"] == "done", events[-1]
    assert events[-1]["data"]["status"] == "completed"
    assert {event["name"] for event in events[1:-1]} == {"delta"}
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    assert answer.status == Message.Status.COMPLETED
    assert "".join(event["data"]["content"] for event in events[1:-1]) == answer.content
    assert answer.content == payload["message"].split("]] ", 1)[1]


@pytest.fixture
def proxied_page(browser, site, alice):
    """A page that reaches the site through a TCP proxy the test can cut."""
    proxy = TcpProxy(int(site.url.rsplit(":", 1)[1]))
    context = browser.new_context(base_url=proxy.url)
    page = context.new_page()
    log_in_browser(page, "alice")
    page.wait_for_url("**/chat/")
    yield page, proxy
    context.close()
    proxy.close()


def test_a_connection_cut_for_seconds_is_followed_again_to_the_saved_answer(proxied_page):
    """The page used to give up after four tries in about 6 s, showing "Failed" while the
    server finished the answer (and its Retry then asked for a second one)."""
    page, proxy = proxied_page
    send(page, long_prompt(words=60, delay_ms=100))
    answer = last_answer(page)
    expect(body(answer)).to_contain_text("w3", timeout=10_000)
    conversation = conversation_id(page)

    proxy.cut()  # every connection drops, and new ones are refused: a dead network
    page.wait_for_timeout(7_000)
    expect(answer).to_have_attribute("data-status", "streaming")  # still waiting, not failed
    proxy.restore()

    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)
    saved = wait_until_saved(conversation)
    assert saved.status == "completed"
    expect(body(answer)).to_have_text(saved.content)
    assert Message.objects.filter(conversation_id=conversation, is_answer=True).count() == 1


def test_a_page_that_went_offline_follows_the_answer_again_as_soon_as_it_is_online(
    proxied_page,
):
    page, proxy = proxied_page
    send(page, long_prompt(words=40, delay_ms=100))
    answer = last_answer(page)
    expect(body(answer)).to_contain_text("w3", timeout=10_000)
    conversation = conversation_id(page)

    # The browser goes offline (the emulation leaves open streams alone: the proxy cuts it).
    page.context.set_offline(True)
    proxy.cut()
    page.wait_for_timeout(8_000)  # the answer ends on the server meanwhile
    saved = wait_until_saved(conversation)
    expect(answer).to_have_attribute("data-status", "streaming")
    proxy.restore()
    page.context.set_offline(False)

    # Back online, the page re-attaches at once, not after its next pause (8 s by then).
    expect(answer).to_have_attribute("data-status", "completed", timeout=3_000)
    expect(body(answer)).to_have_text(saved.content)


# Set up before the page's own scripts: whether the waiting dots ever replace an answer.
WATCH_FOR_WAITING_DOTS = """
window.__sawWaitingDots = false;
new MutationObserver(() => {
  if (document.querySelector("article.message-assistant .waiting-indicator")) {
    window.__sawWaitingDots = true;
  }
}).observe(document, { childList: true, subtree: true });
"""

DISTANCE_FROM_BOTTOM = """() => {
  const thread = document.querySelector("#thread");
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight;
}"""


def test_after_a_reload_mid_answer_the_view_follows_it_without_a_flash(context, page):
    page.set_viewport_size({"width": 1000, "height": 500})
    send(page, long_prompt(words=400, delay_ms=25))
    answer = last_answer(page)
    expect(body(answer)).to_contain_text("w60", timeout=10_000)
    # Reload once the server's row holds part of the answer (checkpointed every 2 s).
    wait_for(
        lambda: Message.objects.filter(
            conversation_id=conversation_id(page), is_answer=True, content__contains="w60"
        ).exists(),
        timeout=10,
    )

    page.add_init_script(WATCH_FOR_WAITING_DOTS)
    page.reload()
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "streaming")
    expect(body(answer)).to_contain_text("w60")  # what the server had, at once

    distances = []
    while answer.get_attribute("data-status") == "streaming":
        distances.append(page.evaluate(DISTANCE_FROM_BOTTOM))
        page.wait_for_timeout(150)
    expect(answer).to_have_attribute("data-status", "completed", timeout=END_MS)

    # The partial answer never gave way to the waiting dots.
    assert page.evaluate("window.__sawWaitingDots") is False
    # The re-attached stream is followed: the view stays at the bottom as the answer grows.
    assert len(distances) >= 5 and max(distances) <= 48, distances
    expect(page.locator("#jump-to-latest")).to_be_hidden()


# Set up before the page's own scripts: every length the last answer's text takes.
RECORD_ANSWER_LENGTHS = """
window.__answerLengths = [];
new MutationObserver(() => {
  const answers = document.querySelectorAll("article.message-assistant .message-body");
  if (answers.length) {
    window.__answerLengths.push(answers[answers.length - 1].textContent.length);
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


def test_a_reload_mid_answer_goes_on_from_the_checkpoint_not_from_the_start(context, page):
    """The page used to replay the answer from its first event, drawing it again from one
    word; it now goes on from the event the server's checkpointed text reaches."""
    send(page, long_prompt(words=300, delay_ms=25))
    conversation = conversation_id(page)
    checkpointed = wait_for(
        lambda: Message.objects.filter(
            conversation_id=conversation, is_answer=True, checkpoint_event__gt=20
        ).first(),
        timeout=15,
    )
    assert checkpointed.status == Message.Status.STREAMING
    asked_from = []
    page.on(
        "request",
        lambda request: (
            "/events" in request.url and asked_from.append(request.headers.get("last-event-id"))
        ),
    )
    page.add_init_script(RECORD_ANSWER_LENGTHS)

    page.reload()

    answer = last_answer(page)
    expect(answer).to_have_attribute("data-last-event-id", re.compile(r"^[1-9]\d*$"))
    resumed_from = int(answer.get_attribute("data-last-event-id"))
    assert resumed_from >= checkpointed.checkpoint_event
    saved = assert_finished_as_saved(answer, conversation)
    assert saved.content == long_prompt(words=300).split("]] ", 1)[1]
    # The events after the checkpoint, not all of them again.
    assert asked_from and asked_from[0] == str(resumed_from), asked_from
    # The text shown at load only ever grew.
    lengths = [n for n in page.evaluate("window.__answerLengths") if n > 0]
    assert lengths and lengths[0] >= len(checkpointed.content), lengths[:5]
    assert lengths == sorted(lengths), f"the answer shrank while resuming: {lengths[:20]}"
