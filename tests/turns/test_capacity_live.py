"""A server process at capacity (MAX_RUNNING_TURNS) refuses new answers with a JSON 503 and
Retry-After, before anything is counted or written, and takes them again once one ends."""

import httpx
import pytest

from conversations.models import Message
from tests.conftest import log_in
from tests.servers import start_site
from tests.sse_client import SseReader

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def one_at_a_time(site_env, server_logs):
    server = start_site(server_logs, {**site_env, "MAX_RUNNING_TURNS": "1"})
    yield server
    server.stop()


def test_a_process_at_capacity_answers_503_and_writes_nothing(
    one_at_a_time, alice, bob, make_api_key
):
    site = one_at_a_time
    client = log_in(site.url, "alice")
    key = make_api_key(bob)
    long = {"message": "[[devllm tokens=20 delay_ms=50]] Take your time."}

    with client.stream("POST", "/api/conversations/", json=long) as running:
        reader = SseReader(running)
        reader.read(until_id=2)  # the first answer is being written
        refused = [
            client.post(
                "/api/conversations/",
                json={"message": "Me too"},
                headers={"X-Request-ID": "cap-01"},
            ),
            httpx.post(
                f"{site.url}/v1/chat/completions",
                json={"model": "dev/dev-chat", "messages": [{"role": "user", "content": "Hi"}]},
                headers={"Authorization": f"Bearer {key}", "X-Request-ID": "cap-02"},
            ),
        ]
        rest = reader.read()

    for response in refused:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert "as many questions as it can" in response.json()["error"]["message"]
    assert not Message.objects.filter(request_id__in=["cap-01", "cap-02"]).exists()
    assert rest[-1].data["status"] == "completed"
    # Not counted against anyone's limits, and room again now that the answer ended.
    again = client.post("/api/conversations/", json={"message": "[[devllm tokens=2]] Now?"})
    assert again.status_code == 200


@pytest.fixture(scope="module")
def five_at_a_time(site_env, server_logs):
    server = start_site(server_logs, {**site_env, "MAX_RUNNING_TURNS": "5"})
    yield server
    server.stop()


def test_a_burst_cannot_slip_past_the_capacity_before_any_of_its_turns_starts(
    five_at_a_time, alice, make_api_key
):
    """The check and the place it claims are one step: 30 requests at once, whose answers
    all outlast the burst, are 5 answers and 25 refusals, never more answers."""
    import asyncio

    key = make_api_key(alice)
    body = {"message": "[[devllm tokens=40 delay_ms=100]] Hold on."}

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=five_at_a_time.url, timeout=60, limits=limits) as c:

            async def ask(n: int) -> int:
                headers = {"Authorization": f"Bearer {key}", "X-Request-ID": f"burst-{n:03d}"}
                async with c.stream("POST", "/api/conversations/", json=body, headers=headers) as r:
                    await r.aread()
                    return r.status_code

            return await asyncio.gather(*(ask(n) for n in range(30)))

    statuses = asyncio.run(burst())

    assert sorted(statuses) == [200] * 5 + [503] * 25, statuses
    assert Message.objects.filter(request_id__startswith="burst-", is_answer=True).count() == 5
