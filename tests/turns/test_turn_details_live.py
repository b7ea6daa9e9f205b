"""What a turn sends and records, against a live daphne and the development LLM server: no
hidden retry of an upstream 429, a model's system prompt (sent on web chats, not on /v1, and
shown in the admin transcript), how long a reasoning model thought, and model clients made
when the server starts.

These run a chatsite process of their own, whose endpoints file gives `dev/dev-chat` a system
prompt and lets the SDK retry (the shared test site retries nothing).
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conversations.models import Message
from conversations.templatetags.turn_format import thought_for
from tests.conftest import log_in
from tests.servers import ROOT, ServerProcess, free_port, server_command, start_site
from tests.sse_client import post_stream

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SYSTEM_PROMPT = "You are the test assistant.\nAnswer briefly; never invent facts."


@pytest.fixture(scope="module")
def prompted_endpoints(devllm, tmp_path_factory) -> Path:
    """The development server, `dev-chat` with a system prompt, and SDK retries allowed: the
    endpoint's own `max_retries`, as a production file may set it."""
    path = tmp_path_factory.mktemp("prompted") / "llm_endpoints.toml"
    path.write_text(
        f'''
[[endpoints]]
name = "dev"
base_url = "{devllm.url}/v1"
max_retries = 2

[[endpoints.models]]
id = "dev-chat"
label = "Dev chat"
system_prompt = """{SYSTEM_PROMPT}"""

[[endpoints.models]]
id = "dev-reasoner"
label = "Dev reasoner"
''',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def prompted_env(site_env, prompted_endpoints) -> dict[str, str]:
    return {**site_env, "LLM_ENDPOINTS_FILE": str(prompted_endpoints)}


@pytest.fixture(scope="module")
def prompted_site(prompted_env, server_logs) -> Iterator[ServerProcess]:
    server = start_site(server_logs, prompted_env)
    yield server
    server.stop()


def devllm_record(devllm, request_id: str) -> dict:
    response = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}")
    assert response.status_code == 200, response.text
    return response.json()


# --- an upstream 429 ----------------------------------------------------------------------


def test_an_upstream_429_is_told_at_once_with_its_retry_after_and_never_retried(
    prompted_site, devllm, alice
):
    client = log_in(prompted_site.url, "alice")

    stream = post_stream(
        client,
        {"message": "[[devllm status=429 retry_after=7]] Hello?", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-429"},
    )

    # Exactly one request reached the model: no retry waited out the 7 seconds first.
    assert devllm_record(devllm, "h3-test-429")["attempts"] == 1
    [error] = stream.named("error")
    assert "Try again in 7 seconds" in error.data["message"]
    assert error.data["http_status"] == 429
    answer = Message.objects.get(request_id="h3-test-429", is_answer=True)
    assert answer.status == Message.Status.FAILED
    assert "Try again in 7 seconds" in answer.error


def test_a_5xx_asking_for_a_long_wait_is_not_retried_either(prompted_site, devllm, alice):
    client = log_in(prompted_site.url, "alice")

    stream = post_stream(
        client,
        {"message": "[[devllm status=503 retry_after=7]] Hello?", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-503"},
    )

    assert devllm_record(devllm, "h3-test-503")["attempts"] == 1
    assert stream.named("error")[0].data["http_status"] == 503


def test_a_plain_5xx_is_still_retried_briefly(prompted_site, devllm, alice):
    """The endpoint's retries are on (so the tests above prove a policy, not a setting)."""
    client = log_in(prompted_site.url, "alice")

    stream = post_stream(
        client,
        {"message": "[[devllm status=500]] Hello?", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-500"},
    )

    assert devllm_record(devllm, "h3-test-500")["attempts"] == 3  # max_retries = 2
    assert stream.named("error")


# --- a system prompt per model ----------------------------------------------------------


def test_the_chat_page_sends_the_models_system_prompt_first_and_records_it(
    prompted_site, devllm, alice
):
    client = log_in(prompted_site.url, "alice")

    # A new conversation: the model is asked while the prompt is saved.
    first = post_stream(
        client,
        {"message": "[[devllm tokens=3]] First question", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-system-1"},
    )
    conversation = first.named("start")[0].data["conversation"]
    # A conversation that goes on: the history is read back in the save.
    post_stream(
        client,
        {
            "message": "[[devllm tokens=3]] Second",
            "model": "dev/dev-chat",
            "conversation": conversation,
        },
        headers={"X-Request-ID": "h3-test-system-2"},
    )

    system = {"role": "system", "content": SYSTEM_PROMPT}
    assert devllm_record(devllm, "h3-test-system-1")["messages"] == [
        system,
        {"role": "user", "content": "[[devllm tokens=3]] First question"},
    ]
    second = devllm_record(devllm, "h3-test-system-2")["messages"]
    assert second[0] == system
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    answers = Message.objects.filter(conversation_id=conversation, is_answer=True)
    assert [a.system_prompt for a in answers] == [SYSTEM_PROMPT, SYSTEM_PROMPT]


def test_a_model_without_a_system_prompt_sends_none(prompted_site, devllm, alice):
    client = log_in(prompted_site.url, "alice")

    post_stream(
        client,
        {"message": "[[devllm tokens=3]] Plain", "model": "dev/dev-reasoner"},
        headers={"X-Request-ID": "h3-test-system-none"},
    )

    messages = devllm_record(devllm, "h3-test-system-none")["messages"]
    assert [m["role"] for m in messages] == ["user"]
    assert Message.objects.get(request_id="h3-test-system-none", is_answer=True).system_prompt == ""


def test_v1_calls_go_to_the_model_as_the_client_sent_them(
    prompted_site, devllm, alice, make_api_key
):
    key = make_api_key(alice)
    sent = [{"role": "user", "content": "[[devllm tokens=3]] From a script"}]

    response = httpx.post(
        f"{prompted_site.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "X-Request-ID": "h3-test-v1"},
        json={"model": "dev/dev-chat", "messages": sent},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert devllm_record(devllm, "h3-test-v1")["messages"] == sent
    assert Message.objects.get(request_id="h3-test-v1", is_answer=True).system_prompt == ""


def test_the_admin_transcript_shows_the_system_prompt_an_answer_was_sent(
    prompted_site, alice, make_user
):
    make_user("root", is_staff=True, is_superuser=True)
    chat = log_in(prompted_site.url, "alice")
    stream = post_stream(
        chat,
        {"message": "[[devllm tokens=3]] Review me", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-admin"},
    )
    conversation = stream.named("start")[0].data["conversation"]

    admin = log_in(prompted_site.url, "root")
    page = admin.get(f"/admin/conversations/conversation/{conversation}/change/")

    assert page.status_code == 200
    html = page.text
    assert "System prompt (sent to the model first)" in html
    # Escaped as text, line break and all (the template shows it as written).
    assert "You are the test assistant.\nAnswer briefly; never invent facts." in html


# --- how long the model thought -----------------------------------------------------------


def test_a_reasoning_answer_records_how_long_the_model_thought(prompted_site, alice, make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = log_in(prompted_site.url, "alice")

    stream = post_stream(
        client,
        {"message": "[[devllm tokens=5 delay_ms=10]] Think first", "model": "dev/dev-reasoner"},
        headers={"X-Request-ID": "h3-test-thought"},
    )
    plain = post_stream(
        client,
        {"message": "[[devllm tokens=3]] No thinking", "model": "dev/dev-chat"},
        headers={"X-Request-ID": "h3-test-unthought"},
    )

    assert stream.named("reasoning") and stream.named("done")
    answer = Message.objects.get(request_id="h3-test-thought", is_answer=True)
    # From the first reasoning to the first text: within the answer's whole time.
    assert answer.reasoning_ms is not None
    assert 0 < answer.reasoning_ms <= answer.duration_ms
    assert plain.named("done")
    assert Message.objects.get(request_id="h3-test-unthought", is_answer=True).reasoning_ms is None
    # After a reload, the chat page and the admin transcript say it.
    summary = f"<summary>{thought_for(answer.reasoning_ms)}</summary>"
    chat_page = client.get(f"/chat/{answer.conversation_id}/")
    assert summary in chat_page.text
    transcript = log_in(prompted_site.url, "root").get(
        f"/admin/conversations/conversation/{answer.conversation_id}/change/"
    )
    assert summary in transcript.text
    assert f"<dt>Thinking</dt><dd>{answer.reasoning_ms} ms</dd>" in transcript.text


# --- model clients made at start-up -------------------------------------------------------


def start_without_requests(log_dir: Path, env: dict, server: str) -> ServerProcess:
    """Start chatsite and wait until its port takes connections, sending no request."""
    port = free_port()
    log_path = log_dir / f"{server}-startup-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, *server_command(server, port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=log,
        )
    started = ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, started.log()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return started
        except OSError:
            time.sleep(0.05)
    started.stop()
    raise AssertionError(f"{server} did not listen in 30 s:\n{started.log()}")


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_model_clients_are_created_as_the_server_starts(prompted_env, server_logs, server):
    started = start_without_requests(server_logs, prompted_env, server)
    try:
        # Listening, and no request served yet: the clients exist already.
        assert "Model clients ready: dev" in started.log()
    finally:
        started.stop()
