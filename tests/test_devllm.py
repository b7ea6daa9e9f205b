"""Test the development LLM server over real HTTP, started as a real subprocess.

These tests need neither Django settings nor a database: the server is plain
aiohttp and is exercised with the official openai SDK and with raw httpx.
"""

import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

# It starts the development LLM server.
pytestmark = pytest.mark.live

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVER_DELAY_MS = 5
API_KEY = "sekrit-dev-key"
# Start-up line printed by each server, keyed by its base URL.
ANNOUNCED: dict[str, str] = {}


def _free_port() -> int:
    """Ask the OS for a port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(*extra: str) -> Iterator[str]:
    """Start `python -m devllm` in a subprocess, yield its base URL, and kill it afterwards.

    At teardown, fail if the server wrote a traceback: faults and disconnects must be quiet.
    """
    port = _free_port()
    cmd = [sys.executable, "-m", "devllm", "--port", str(port)]
    cmd += ["--delay-ms", str(SERVER_DELAY_MS), *extra]
    # stderr goes to a file, not a pipe nobody reads, so a chatty server can never block.
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=stderr)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 15
            while True:
                if proc.poll() is not None:
                    stderr.seek(0)
                    pytest.fail(f"devllm exited early: {stderr.read().decode()}")
                try:
                    httpx.get(f"{base}/v1/models", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "devllm did not start within 15 s"
                    time.sleep(0.05)
            # The line is printed before the first request is served, so this does not block.
            ANNOUNCED[base] = proc.stdout.readline().decode()
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert proc.returncode == 0, f"devllm exited with {proc.returncode} on SIGTERM"
        stderr.seek(0)
        errors = stderr.read().decode()
        assert "Traceback" not in errors and "Error handling request" not in errors, errors


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Serve devllm without an API key for the whole module."""
    yield from _start_server()


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    """Serve devllm that requires API_KEY."""
    yield from _start_server("--api-key", API_KEY)


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    """Return an SDK client pointed at the server, without retries."""
    return openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0)


def user(text: str) -> list[dict[str, str]]:
    """Build a one-message conversation."""
    return [{"role": "user", "content": text}]


def chat_body(text: str, *, model: str = "dev-chat", **extra: object) -> dict[str, object]:
    """Build a streaming chat completion request body."""
    return {"model": model, "messages": user(text), "stream": True, **extra}


def data_lines(response: httpx.Response) -> Iterator[tuple[float, str]]:
    """Yield (arrival time, payload) for each `data:` line of an SSE response."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.monotonic(), line[len("data: ") :]


def content_of(payload: str) -> str | None:
    """Return the content delta of a chunk payload, or None if it carries none."""
    chunk = json.loads(payload)
    if not chunk.get("choices"):
        return None
    return chunk["choices"][0]["delta"].get("content") or None


def record(server: str, request_id: str) -> dict[str, object]:
    """Fetch the server's record of one request."""
    response = httpx.get(f"{server}/_devllm/requests/{request_id}")
    response.raise_for_status()
    return response.json()


def wait_for_record(server: str, request_id: str, key: str, timeout: float = 2.0) -> dict:
    """Poll a request record until record[key] is true, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        rec = record(server, request_id)
        if rec[key]:
            return rec
        assert time.monotonic() < deadline, f"{key} never became true: {rec}"
        time.sleep(0.02)


def test_startup_line_names_the_base_url(server: str) -> None:
    assert ANNOUNCED[server] == f"devllm: OpenAI-compatible server on {server}/v1\n"


# -- SDK-level behaviour ------------------------------------------------------------------------


def test_streaming_matches_non_streaming_and_reports_usage(client: openai.OpenAI) -> None:
    prompt = "How do Python lists work?"
    whole = client.chat.completions.create(model="dev-chat", messages=user(prompt))
    answer = whole.choices[0].message.content
    assert whole.object == "chat.completion"
    assert whole.choices[0].finish_reason == "stop"
    assert "```" in answer and len(answer) > 100
    assert whole.usage.completion_tokens >= 60

    chunks = list(
        client.chat.completions.create(
            model="dev-chat",
            messages=user(prompt),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"


def test_same_prompt_gives_same_answer_and_answers_vary(client: openai.OpenAI) -> None:
    def ask(text: str) -> str:
        reply = client.chat.completions.create(model="dev-chat", messages=user(text))
        return reply.choices[0].message.content

    assert ask("What is a thread?") == ask("What is a thread?")
    answers = {ask(f"question number {n}") for n in range(12)}
    assert len(answers) >= 3


def test_models_list_and_unknown_model(server: str, client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["dev-chat", "dev-reasoner"]
    assert all(m.owned_by == "devllm" and isinstance(m.created, int) for m in models.data)

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nope", messages=user("hi"))
    raw = httpx.post(f"{server}/v1/chat/completions", json={"model": "gpt-nope"})
    assert raw.status_code == 400  # no messages: rejected before the model lookup
    raw = httpx.post(
        f"{server}/v1/chat/completions", json={"model": "gpt-nope", "messages": user("hi")}
    )
    assert raw.status_code == 404
    error = raw.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == ("model", "model_not_found")


def test_malformed_json_and_missing_messages_are_400(server: str) -> None:
    url = f"{server}/v1/chat/completions"
    bad_json = httpx.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    no_messages = httpx.post(url, json={"model": "dev-chat"})
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"


def test_reasoner_streams_reasoning_before_content(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="dev-reasoner", messages=user("Explain indexes"), stream=True
    )
    kinds = []
    for chunk in stream:
        delta = chunk.choices[0].delta
        if getattr(delta, "reasoning_content", None):
            assert not delta.content
            kinds.append("reasoning")
        elif delta.content:
            kinds.append("content")
    assert kinds.count("reasoning") >= 10
    assert kinds.count("content") >= 60
    assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "reasoning")

    whole = client.chat.completions.create(model="dev-reasoner", messages=user("Explain indexes"))
    message = whole.choices[0].message
    assert message.content and message.model_extra["reasoning_content"]


def test_echo_returns_exact_multibyte_text(client: openai.OpenAI) -> None:
    text = "Crème brûlée, 日本語, emoji 🎉 and <script>alert('x')</script>"
    prompt = f"  [[devllm echo]] {text}  \n"
    whole = client.chat.completions.create(model="dev-chat", messages=user(prompt))
    assert whole.choices[0].message.content == text
    stream = client.chat.completions.create(model="dev-chat", messages=user(prompt), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == text


def test_token_limits_finish_with_length(client: openai.OpenAI) -> None:
    cut = client.chat.completions.create(
        model="dev-chat", messages=user("Tell me about SQL [[devllm tokens=5]]")
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 5
    chunks = list(
        client.chat.completions.create(
            model="dev-chat", messages=user("Tell me about SQL [[devllm tokens=5]]"), stream=True
        )
    )
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 5
    assert chunks[-1].choices[0].finish_reason == "length"

    capped = client.chat.completions.create(
        model="dev-chat", messages=user("Tell me about SQL"), max_tokens=7
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage.completion_tokens == 7


def test_status_directives_raise_sdk_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as rate_limited:
        client.chat.completions.create(
            model="dev-chat", messages=user("hi [[devllm status=429 retry_after=2]]"), stream=True
        )
    assert rate_limited.value.response.headers["Retry-After"] == "2"
    assert rate_limited.value.body["type"] == "rate_limit_error"

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="dev-chat", messages=user("[[devllm status=500]]"))
    with pytest.raises(openai.APIStatusError) as unavailable:
        client.chat.completions.create(model="dev-chat", messages=user("[[devllm status=503]]"))
    assert unavailable.value.status_code == 503


def test_api_key_is_enforced(keyed_server: str) -> None:
    wrong = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.chat.completions.create(model="dev-chat", messages=user("hi"))
    assert denied.value.body["type"] == "authentication_error"
    assert denied.value.body["code"] == "invalid_api_key"
    missing = httpx.get(f"{keyed_server}/v1/models")
    assert missing.status_code == 401

    right = openai.OpenAI(base_url=f"{keyed_server}/v1", api_key=API_KEY, max_retries=0)
    reply = right.chat.completions.create(model="dev-chat", messages=user("[[devllm echo]] ok"))
    assert reply.choices[0].message.content == "ok"


# -- Raw wire format ----------------------------------------------------------------------------


def test_raw_wire_format_is_paced(server: str) -> None:
    delay_ms, tokens = 40, 8
    body = chat_body(f"Tell me a story [[devllm tokens={tokens} delay_ms={delay_ms}]]")
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        raw = []
        lines = []
        for line in response.iter_lines():
            raw.append(line)
            if line.startswith("data: "):
                lines.append((time.monotonic(), line[len("data: ") :]))

    # Events are separated by a blank line, exactly `data: <json>\n\n`.
    assert all(line == "" for line in raw[1::2])
    assert lines[-1][1] == "[DONE]"
    chunks = [json.loads(payload) for _, payload in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "dev-chat"
        assert chunk["choices"][0]["logprobs"] is None
        assert "usage" not in chunk  # include_usage was not requested
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }

    content_times = [t for t, payload in lines[:-1] if content_of(payload)]
    assert len(content_times) == tokens
    spread = content_times[-1] - content_times[0]
    expected = (tokens - 1) * delay_ms / 1000
    assert expected * 0.8 <= spread <= expected * 4 + 0.5


def test_first_token_ms_holds_the_first_token_back(server: str) -> None:
    body = chat_body("Think first [[devllm tokens=3 delay_ms=1 first_token_ms=300]]")
    started = time.monotonic()
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        lines = [(t, payload) for t, payload in data_lines(response) if payload != "[DONE]"]
    times = [t for t, payload in lines if content_of(payload)]
    assert len(times) == 3
    assert times[0] - started >= 0.3  # the role chunk came at once, the text after 300 ms
    assert times[-1] - times[0] < 0.25


def test_error_after_sends_error_event_without_done(server: str) -> None:
    body = chat_body("hi [[devllm error_after=3]]")
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        payloads = [payload for _, payload in data_lines(response)]
    assert sum(1 for p in payloads[1:] if content_of(p)) == 3
    assert all(content_of(p) for p in payloads[1:-1])
    error = json.loads(payloads[-1])["error"]
    assert error["type"] == "server_error" and error["code"] == "devllm_fault"
    assert "after 3 tokens" in error["message"]
    assert "[DONE]" not in payloads


def test_drop_after_aborts_the_connection(server: str) -> None:
    request_id = f"drop-{uuid.uuid4().hex}"
    body = chat_body("hi [[devllm drop_after=3]]")
    contents = []
    headers = {"X-Request-ID": request_id}
    with (
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
        httpx.stream(
            "POST", f"{server}/v1/chat/completions", json=body, headers=headers
        ) as response,
    ):
        for _, payload in data_lines(response):
            assert payload != "[DONE]"
            if content_of(payload):
                contents.append(content_of(payload))
    assert len(contents) == 3
    rec = record(server, request_id)
    assert rec["tokens_sent"] == 3
    assert rec["finished"] is False and rec["client_disconnected"] is False


def test_malformed_after_sends_invalid_json_then_finishes(server: str) -> None:
    body = chat_body("hi [[devllm malformed_after=2 tokens=4]]")
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body) as response:
        payloads = [payload for _, payload in data_lines(response)]
    bad = [i for i, p in enumerate(payloads) if p == "{this is not json"]
    assert len(bad) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(payloads[bad[0]])
    assert sum(1 for p in payloads[: bad[0]] if p.startswith("{") and content_of(p)) == 2
    assert payloads[-1] == "[DONE]"


# -- Request records and client disconnects -----------------------------------------------------


def test_complete_stream_is_recorded_as_finished(server: str) -> None:
    request_id = f"done-{uuid.uuid4().hex}"
    body = chat_body("hi [[devllm tokens=6]]", max_tokens=50, temperature=0.3)
    with httpx.stream(
        "POST", f"{server}/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}
    ) as response:
        assert response.headers["x-request-id"] == request_id
        assert list(data_lines(response))[-1][1] == "[DONE]"
    rec = record(server, request_id)
    assert rec["finished"] is True and rec["client_disconnected"] is False
    assert rec["tokens_sent"] == 6
    assert (rec["model"], rec["stream"], rec["max_tokens"], rec["temperature"]) == (
        "dev-chat",
        True,
        50,
        0.3,
    )
    assert rec["fault"] == {"tokens": 6}
    assert rec["messages"] == user("hi [[devllm tokens=6]]")

    listed = httpx.get(f"{server}/_devllm/requests").json()["data"]
    assert request_id in [r["request_id"] for r in listed]
    assert httpx.get(f"{server}/_devllm/requests/nope").status_code == 404


def test_client_closing_mid_stream_is_recorded_and_stops_generation(server: str) -> None:
    request_id = f"close-{uuid.uuid4().hex}"
    body = chat_body("Tell me about threads [[devllm delay_ms=20]]")
    seen = 0
    with (
        httpx.Client() as http,
        http.stream(
            "POST", f"{server}/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}
        ) as response,
    ):
        for _, payload in data_lines(response):
            if content_of(payload):
                seen += 1
            if seen == 3:
                break
        # Leaving the block closes the half-read response, which closes the socket.
    rec = wait_for_record(server, request_id, "client_disconnected")
    assert rec["finished"] is False
    sent = rec["tokens_sent"]
    assert 3 <= sent < 20
    time.sleep(0.3)  # 15 token delays: generation would have moved on if it were still running
    assert record(server, request_id)["tokens_sent"] == sent


def test_client_closing_during_hang_is_recorded(server: str) -> None:
    request_id = f"hang-{uuid.uuid4().hex}"
    body = chat_body("hi [[devllm hang]]")
    with httpx.Client(timeout=httpx.Timeout(5, read=0.5)) as http:
        with (
            pytest.raises(httpx.ReadTimeout),
            http.stream(
                "POST",
                f"{server}/v1/chat/completions",
                json=body,
                headers={"X-Request-ID": request_id},
            ) as response,
        ):
            payloads = []
            for _, payload in data_lines(response):
                payloads.append(payload)
        assert len(payloads) == 1
        assert json.loads(payloads[0])["choices"][0]["delta"]["role"] == "assistant"
    rec = wait_for_record(server, request_id, "client_disconnected")
    assert rec["finished"] is False and rec["tokens_sent"] == 0


def test_hang_after_stops_after_n_tokens(server: str) -> None:
    request_id = f"hang-after-{uuid.uuid4().hex}"
    body = chat_body("hi [[devllm hang_after=2]]")
    contents = []
    timeout = httpx.Timeout(5, read=0.5)
    with (
        httpx.Client(timeout=timeout) as http,
        pytest.raises(httpx.ReadTimeout),
        http.stream(
            "POST",
            f"{server}/v1/chat/completions",
            json=body,
            headers={"X-Request-ID": request_id},
        ) as response,
    ):
        for _, payload in data_lines(response):
            if content_of(payload):
                contents.append(payload)
    assert len(contents) == 2
    rec = wait_for_record(server, request_id, "client_disconnected")
    assert rec["tokens_sent"] == 2


def test_hang_before_sends_no_headers(server: str) -> None:
    request_id = f"hang-before-{uuid.uuid4().hex}"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server}/v1/chat/completions",
            json=chat_body("hi [[devllm hang_before]]"),
            headers={"X-Request-ID": request_id},
            timeout=httpx.Timeout(5, read=0.3),
        )
    rec = wait_for_record(server, request_id, "client_disconnected")
    assert rec["status"] is None and rec["finished"] is False
