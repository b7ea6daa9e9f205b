"""The ASGI handler (chatsite.handlers): requests reuse their sync thread, and an open stream
holds none. A thousand open answers each held a thread of their own (19 KB each) and their
whole request, until they ended."""

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.servers import start_site

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

OPEN = 40
SILENT = "[[devllm hang_before]] Hold on."


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


@pytest.mark.parametrize("server", ["uvicorn", "daphne"])
def test_open_streams_hold_no_thread_each(site_env, server_logs, alice, make_api_key, server):
    # The model stays silent for as long as the test holds its streams: none may time out
    # (the suite's 3 s read timeout) while the last ones are still being opened.
    env = {**site_env, "SITE_API_DISCONNECT_POLICY": "cancel", "LLM_READ_TIMEOUT": "60"}
    site = start_site(server_logs, env, server=server)
    key = make_api_key(alice)

    async def hold() -> tuple[int, int, dict]:
        limits = httpx.Limits(max_connections=OPEN + 5)
        async with httpx.AsyncClient(base_url=site.url, timeout=60, limits=limits) as client:
            # A few requests first: the pool of request threads is warm, as in production.
            for _ in range(5):
                assert (await client.get("/health")).status_code == 200
            before = threads_of(site.process.pid)
            held = []
            for n in range(OPEN):
                request = client.build_request(
                    "POST",
                    "/api/conversations/",
                    json={"message": SILENT},
                    headers={"Authorization": f"Bearer {key}", "X-Request-ID": f"held-{n:04d}"},
                )
                response = await client.send(request, stream=True)
                lines = response.aiter_lines()
                async for line in lines:
                    if line.startswith("event: start"):
                        break
                held.append((response, lines))
            health = (await client.get("/health")).json()
            during = threads_of(site.process.pid)
            for response, _ in held:
                await response.aclose()
            return before, during, health

    try:
        before, during, health = asyncio.run(hold())
    finally:
        site.stop()

    assert (health["running_turns"], health["readers"]) == (OPEN, OPEN)
    # Some threads come and go (the saves', the spool's); none stays per open stream.
    assert during - before < OPEN / 4, (before, during)
