"""Many concurrent streams against a small database pool."""

import asyncio

import httpx
import pytest

from conversations.models import Message
from tests.conftest import log_in
from tests.servers import start_site
from tests.sse_client import parse_events

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

STREAMS = 20


@pytest.fixture(scope="module")
def small_pool_site(site_env, server_logs):
    server = start_site(
        server_logs,
        {
            **site_env,
            "DATABASE_POOL_MIN_SIZE": "4",
            "DATABASE_POOL_MAX_SIZE": "4",
            # Fail fast: a stream that holds its connection would starve the others.
            "DATABASE_POOL_TIMEOUT": "3",
        },
    )
    yield server
    server.stop()


async def stream_one(client: httpx.AsyncClient, n: int) -> list:
    events, buffer = [], b""
    async with client.stream(
        "POST",
        "/chat/stream/",
        json={"message": f"[[devllm delay_ms=40]] concurrent question {n}"},
        headers={"X-Request-ID": f"concurrent-{n:04d}"},
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            parsed, buffer = parse_events(buffer + chunk, 0)
            events.extend(parsed)
    return events


def test_twenty_concurrent_streams_complete_with_a_pool_of_four(small_pool_site, alice):
    session = log_in(small_pool_site.url, "alice")

    async def run_all():
        async with httpx.AsyncClient(
            base_url=small_pool_site.url,
            cookies=session.cookies,
            headers=dict(session.headers),
            timeout=60,
            limits=httpx.Limits(max_connections=STREAMS),
        ) as client:
            return await asyncio.gather(*(stream_one(client, n) for n in range(STREAMS)))

    results = asyncio.run(run_all())

    for events in results:
        assert events[-1].name == "done", [e.name for e in events[-3:]]
        assert events[-1].data["status"] == "completed"
    answers = Message.objects.filter(role="assistant", request_id__startswith="concurrent-")
    assert answers.count() == STREAMS
    assert set(answers.values_list("status", flat=True)) == {Message.Status.COMPLETED}
