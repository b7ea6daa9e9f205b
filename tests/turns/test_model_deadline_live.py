"""LLM_READ_TIMEOUT is the longest a user waits for a model that does not answer, the SDK's
retries included (the fault audit of issue 11 saw twice that with one retry)."""

import time

import httpx
import pytest

from conversations.models import Message
from tests.servers import start_site

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

READ_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def retrying_site(site_env, server_logs):
    env = {**site_env, "LLM_MAX_RETRIES": "1", "LLM_READ_TIMEOUT": str(READ_TIMEOUT)}
    server = start_site(server_logs, env)
    yield server
    server.stop()


def test_a_model_that_never_answers_fails_within_the_read_timeout_retries_included(
    retrying_site, alice, make_api_key
):
    key = make_api_key(alice)
    started = time.monotonic()
    response = httpx.post(
        f"{retrying_site.url}/v1/chat/completions",
        json={
            "model": "dev/dev-chat",
            "messages": [{"role": "user", "content": "[[devllm hang_before]] Anyone there?"}],
        },
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "never-answers-1"},
        timeout=30,
    )
    waited = time.monotonic() - started

    assert response.status_code == 504
    assert response.json()["error"]["message"] == "The model did not answer in time."
    # One read timeout, not one per attempt: two attempts would take over twice that. The
    # rest of the margin is for a busy machine (at 1.5 times a 2 s timeout, one took 3.04 s).
    assert waited < READ_TIMEOUT * 1.8
    answer = Message.objects.get(request_id="never-answers-1", is_answer=True)
    assert answer.status == "failed"


def test_a_model_silent_after_its_headers_is_a_504_not_a_502(retrying_site, alice, make_api_key):
    """The model's endpoint answers 200 and its first, empty chunk, then nothing: too slow to
    answer, as a gateway says it (the README's 504), not a broken upstream."""
    response = httpx.post(
        f"{retrying_site.url}/v1/chat/completions",
        json={
            "model": "dev/dev-chat",
            "messages": [{"role": "user", "content": "[[devllm hang]] Anyone there?"}],
        },
        headers={"Authorization": f"Bearer {make_api_key(alice)}", "X-Request-ID": "silent-1"},
        timeout=30,
    )

    assert response.status_code == 504, response.text
    assert response.json()["error"]["message"] == "The model did not answer in time."
    assert Message.objects.get(request_id="silent-1", is_answer=True).status == "failed"
