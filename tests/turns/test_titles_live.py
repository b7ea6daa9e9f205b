"""Generated titles (CHAT_GENERATED_TITLES), against a live daphne of their own and the
development LLM server: after a new chat's first answer its model writes the title; the call
is recorded like every other (request ID, usage, what was sent) and charged to no limit."""

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, DailyUsage, Message
from conversations.services import title_from_message
from conversations.turns.titles import TITLE_INSTRUCTION, clean_title, save_title
from tests.conftest import log_in, log_in_browser
from tests.servers import ServerProcess, start_site
from tests.sse_client import post_stream
from tests.test_services import finished, start

QUESTION = "How do tides work, and why are there two of them each day?"


@pytest.fixture(scope="module")
def titled_site(site_env, server_logs) -> Iterator[ServerProcess]:
    server = start_site(server_logs, {**site_env, "CHAT_GENERATED_TITLES": "1"})
    yield server
    server.stop()


def wait_for_title_call(request_id: str, timeout: float = 15) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = Message.objects.filter(request_id=f"{request_id}-title").first()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError("no title was generated")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_new_chat_is_titled_by_its_model_and_the_call_is_kept(titled_site, devllm, alice):
    client = log_in(titled_site.url, "alice")
    stream = post_stream(client, {"message": QUESTION, "model": "dev/dev-chat"})
    done = stream.named("done")
    assert done and done[0].data["status"] == "completed", stream.events
    start_event = stream.named("start")[0].data
    request_id = start_event["request_id"]
    assert start_event["title"] == title_from_message(QUESTION)  # the page's first title

    call = wait_for_title_call(request_id)
    conversation = Conversation.objects.get(pk=start_event["conversation"])
    # The model's reply became the title, cleaned up like a first-message title.
    assert conversation.title == clean_title(call.content) != title_from_message(QUESTION)
    assert call.purpose == Message.Purpose.TITLE and call.status == "completed"
    assert call.prompt_tokens and call.completion_tokens and call.usage_reported
    assert call.user_id == alice.pk and call.conversation_id == conversation.pk
    # Never part of the thread, nor of what the model is sent next.
    detail = client.get(f"/api/conversations/{conversation.pk}/").json()
    assert detail["title"] == conversation.title
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]

    # What the model was asked: the instruction, the question and the first answer.
    record = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}-title").json()
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user"]
    assert record["messages"][0]["content"] == TITLE_INSTRUCTION
    assert record["messages"][1]["content"] == QUESTION

    # Counted against no limit: the day's usage is the answer's tokens alone.
    answer = Message.objects.get(request_id=request_id, is_answer=True)
    usage = DailyUsage.objects.get(user=alice)
    assert usage.answers == 1
    assert usage.tokens == answer.prompt_tokens + answer.completion_tokens

    # The second answer asks for no title.
    follow = post_stream(
        client,
        {"message": "And spring tides?", "conversation": conversation.pk, "message_id": answer.pk},
    )
    assert follow.named("done"), follow.events
    time.sleep(1)
    assert Message.objects.filter(purpose=Message.Purpose.TITLE).count() == 1


@pytest.mark.django_db
def test_a_title_the_user_chose_meanwhile_is_kept_and_the_call_recorded(alice):
    turn = start(alice, "req-title-0001", content=QUESTION)
    Conversation.objects.filter(pk=turn.conversation_id).update(title="My tides notes")
    ask = [{"role": "system", "content": TITLE_INSTRUCTION}]

    kept = save_title(finished(turn), ask, '"Tides Explained."', (40, 3), "chatcmpl-t", 120)

    assert kept == "My tides notes"
    assert Conversation.objects.get(pk=turn.conversation_id).title == "My tides notes"
    call = Message.objects.get(request_id="req-title-0001-title")
    assert (call.prompt_tokens, call.completion_tokens, call.content) == (
        40,
        3,
        '"Tides Explained."',
    )
    assert call.superseded_at is not None


def test_a_reply_becomes_a_clean_title():
    assert clean_title('"Tides Explained."') == "Tides Explained"
    assert clean_title("Title: **Why two tides**\n\nMore text") == "Why two tides"
    assert clean_title("  \n# Moon and sea  ") == "Moon and sea"


@pytest.mark.live
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_chat_page_shows_the_generated_title_when_it_comes(titled_site, browser, alice):
    context = browser.new_context(base_url=titled_site.url)
    page = context.new_page()
    log_in_browser(page, "alice")
    page.fill("#message-input", QUESTION)
    page.press("#message-input", "Enter")
    answer = page.locator("article.message-assistant").last
    expect(answer).to_have_attribute("data-status", "completed", timeout=15_000)

    request_id = Message.objects.get(pk=answer.get_attribute("data-message-id")).request_id
    call = wait_for_title_call(request_id)
    title = Conversation.objects.get(pk=call.conversation_id).title
    expect(page.locator("#chat-title")).to_have_text(title, timeout=10_000)
    expect(page.locator(".conversation-link[aria-current=page]")).to_have_text(title)
    context.close()
