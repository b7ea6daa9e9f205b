"""Versions, type-ahead and Escape on the chat page, in Chromium against a live site.

Regenerated answers and edited questions stay reachable as "< n / N >", after a reload too;
editing an earlier question branches, and the model is asked the branch's history (read
back from the development LLM server's own record of the request). The message box stays
usable while an answer streams; Escape stops the answer, saved as stopped.
"""

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from conversations.models import Message
from tests.servers import ROOT

SCREENSHOTS = ROOT / "artifacts" / "screenshots"

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def answers(page: Page):
    return page.locator("article.message-assistant:not([hidden])")


def finished(page: Page, status: str = "completed"):
    answer = answers(page).last
    expect(answer).to_have_attribute("data-status", status, timeout=15_000)
    expect(page.locator("#thread")).to_have_attribute("aria-busy", "false")
    return answer


def shown_ids(page: Page) -> list[str]:
    return page.locator("article.message:not([hidden])").evaluate_all(
        "articles => articles.map(a => a.dataset.messageId)"
    )


def saved_status(request_id: str, want: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = Message.objects.get(request_id=request_id, is_answer=True).status
        if status == want:
            break
        time.sleep(0.1)
    return status


def test_regenerating_twice_keeps_three_answers_switchable_after_a_reload(page):
    send(page, "Tell me about versions.")
    first = finished(page).get_attribute("data-message-id")
    ids = [first]
    for count in (2, 3):
        finished(page).get_by_role("button", name="Regenerate").click()
        expect(answers(page).last).not_to_have_attribute("data-message-id", ids[-1])
        answer = finished(page)
        expect(answer.locator(".version-status")).to_have_text(f"{count} / {count}")
        ids.append(answer.get_attribute("data-message-id"))
    assert len(set(ids)) == 3
    expect(answers(page)).to_have_count(1)

    for number in (2, 1):
        answers(page).last.get_by_role("button", name="Previous version").click()
        expect(answers(page).last).to_have_attribute("data-message-id", ids[number - 1])
        expect(answers(page).last.locator(".version-status")).to_have_text(f"{number} / 3")
    expect(answers(page).last.get_by_role("button", name="Previous version")).to_be_disabled()
    # The keyboard stays on the switcher it used.
    assert page.evaluate("document.activeElement.dataset.action") == "version"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "chat-versions-light.png")

    page.reload()
    expect(answers(page).last).to_have_attribute("data-message-id", ids[0])
    expect(answers(page).last.locator(".version-status")).to_have_text("1 / 3")
    answers(page).last.get_by_role("button", name="Next version").click()
    expect(answers(page).last).to_have_attribute("data-message-id", ids[1])
    page.reload()
    expect(answers(page).last).to_have_attribute("data-message-id", ids[1])
    expect(answers(page)).to_have_count(1)


def test_editing_an_earlier_message_branches_and_the_model_gets_that_history(page, devllm):
    send(page, "[[devllm echo]] alpha")
    finished(page)
    send(page, "[[devllm echo]] beta")
    finished(page)
    before = shown_ids(page)
    assert len(before) == 4

    first_question = page.locator("article.message-user").first
    first_question.hover()
    first_question.get_by_role("button", name="Edit message").click()
    page.fill(".message-editor-input", "[[devllm echo]] gamma")
    page.press(".message-editor-input", "Enter")
    edited_answer = finished(page)
    expect(edited_answer.locator(".message-body")).to_have_text("gamma")
    expect(page.locator("article.message:not([hidden])")).to_have_count(2)
    expect(page.locator("article.message-user").first.locator(".version-status")).to_have_text(
        "2 / 2"
    )

    # What the model was asked: the branch's history, nothing of alpha or beta.
    request_id = Message.objects.get(pk=edited_answer.get_attribute("data-message-id")).request_id
    record = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}").json()
    asked = [(m["role"], m["content"]) for m in record["messages"] if m["role"] != "system"]
    assert asked == [("user", "[[devllm echo]] gamma")]

    page.locator("article.message-user").first.get_by_role(
        "button", name="Previous version"
    ).click()
    expect(page.locator("article.message:not([hidden])")).to_have_count(4)
    assert shown_ids(page) == before
    page.reload()
    assert shown_ids(page) == before

    # A question after switching back continues the branch shown: alpha, beta, then this.
    send(page, "[[devllm echo]] delta")
    answer = finished(page)
    request_id = Message.objects.get(pk=answer.get_attribute("data-message-id")).request_id
    record = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}").json()
    asked = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert asked == ["[[devllm echo]] alpha", "[[devllm echo]] beta", "[[devllm echo]] delta"]


def test_typing_while_an_answer_streams_keeps_every_keystroke_and_escape_stops_it(page):
    send(page, "[[devllm delay_ms=60]] A long answer, please.")
    answer = answers(page).last
    expect(answer.locator(".message-body")).not_to_have_text("", timeout=10_000)
    box = page.locator("#message-input")
    expect(box).to_be_focused()

    typed = "Next: what about the edge cases?"
    box.press_sequentially(typed, delay=15)
    expect(answer).to_have_attribute("data-status", "streaming")  # typed while it streamed
    expect(box).to_have_value(typed)
    expect(box).to_be_focused()

    page.keyboard.press("Escape")
    expect(answer).to_have_attribute("data-status", "stopped")
    request_id = Message.objects.get(pk=answer.get_attribute("data-message-id")).request_id
    assert saved_status(request_id, "stopped") == "stopped"
    expect(box).to_have_value(typed)  # stopping sends nothing by itself
    expect(page.locator("article.message-user")).to_have_count(1)


def test_enter_while_an_answer_streams_queues_the_message_until_it_ends(page):
    send(page, "[[devllm delay_ms=40 tokens=40]] Count slowly.")
    answer = answers(page).last
    expect(answer.locator(".message-body")).not_to_have_text("", timeout=10_000)
    box = page.locator("#message-input")
    box.fill("[[devllm echo]] the queued one")
    box.press("Enter")
    expect(page.locator("#composer-hint")).to_contain_text("Queued")
    expect(page.locator("article.message-user")).to_have_count(1)

    expect(page.locator("article.message-user")).to_have_count(2, timeout=15_000)
    expect(page.locator("article.message-user").last.locator(".message-body")).to_have_text(
        "[[devllm echo]] the queued one"
    )
    expect(finished(page).locator(".message-body")).to_have_text("the queued one")
    expect(box).to_have_value("")
    expect(page.locator("#composer-hint")).not_to_contain_text("Queued")


def test_each_answer_names_its_model_once_the_chat_uses_two(page):
    send(page, "Hello there.")
    finished(page)
    expect(page.locator(".message-model")).to_have_count(0)
    page.select_option("#model-select", label="Dev reasoner")
    send(page, "And you?")
    finished(page)
    expect(page.locator(".message-model")).to_have_text(["Dev chat", "Dev reasoner"])
    page.reload()
    expect(page.locator(".message-model")).to_have_text(["Dev chat", "Dev reasoner"])


# How visible an element is: its opacity times its ancestors' (opacity is not inherited).
SEEN_OPACITY = """(element) => {
  let seen = 1;
  for (let e = element; e; e = e.parentElement) seen *= Number(getComputedStyle(e).opacity);
  return seen;
}"""


def test_a_questions_versions_show_without_hovering_and_no_hidden_row_pushes_apart(page):
    """On a desktop the actions show on hover, but the versions always do (they were
    invisible until hovered), and a question's hidden row no longer leaves a ~60 px gap
    before its answer."""
    page.set_viewport_size({"width": 1280, "height": 800})
    send(page, "[[devllm echo]] alpha")
    finished(page)
    send(page, "[[devllm echo]] beta")
    finished(page)
    question = page.locator("article.message-user").last
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    page.fill(".message-editor-input", "[[devllm echo]] gamma")
    page.press(".message-editor-input", "Enter")
    finished(page)
    page.mouse.move(5, 5)  # away from every message
    page.locator("#message-input").focus()
    page.wait_for_timeout(400)  # past the actions' fade (0.15 s)

    first, edited = page.locator("article.message-user").first, question
    versions = edited.locator(".message-versions")
    expect(versions.locator(".version-status")).to_have_text("2 / 2")
    assert versions.evaluate(SEEN_OPACITY) == 1
    edit = first.get_by_role("button", name="Edit message")
    assert edit.evaluate(SEEN_OPACITY) == 0  # until hovered

    gap = page.evaluate(
        """() => {
          const question = document.querySelector("article.message-user .message-body");
          const answer = document.querySelectorAll("article.message-assistant")[0];
          return answer.getBoundingClientRect().top - question.getBoundingClientRect().bottom;
        }"""
    )
    assert gap <= 44, f"{gap} px between a question and its answer"
