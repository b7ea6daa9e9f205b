"""The model client against the development LLM server, over real HTTP."""

import asyncio
import uuid

import httpx
import pytest

from conversations.providers.client import ChatModelClient
from conversations.providers.config import development_endpoints

# It starts the development LLM server.
pytestmark = pytest.mark.live


def test_answers_in_a_row_reuse_one_upstream_connection(devllm):
    """Each answer read to its [DONE] gives its connection back to the pool: no TCP handshake
    before the next answer's first token."""
    (endpoint,) = development_endpoints(
        devllm_url=f"{devllm.url}/v1", connect_timeout=5, read_timeout=30, max_retries=0
    )
    request_ids = [f"pool-{uuid.uuid4().hex[:12]}" for _ in range(2)]

    async def two_answers() -> list[str]:
        client = ChatModelClient(endpoint)
        try:
            return [
                "".join(
                    [
                        chunk.content
                        async for chunk in client.stream_chat(
                            model="dev-chat",
                            messages=[{"role": "user", "content": "[[devllm tokens=5]] Hi"}],
                            request_id=request_id,
                        )
                    ]
                )
                for request_id in request_ids
            ]
        finally:
            await client.aclose()

    texts = asyncio.run(two_answers())

    assert all(texts), "both answers arrived"
    first, second = (
        httpx.get(f"{devllm.url}/_devllm/requests/{request_id}").json()
        for request_id in request_ids
    )
    assert first["client_address"] == second["client_address"], "a new connection each time"


def test_an_answer_whose_body_ends_just_after_done_still_gives_its_connection_back(quirky):
    """The quirk `slow-ok` ends its body 50 ms after [DONE]: the client reads to that end
    rather than closing the response (and its connection) at [DONE]."""
    (endpoint,) = development_endpoints(
        devllm_url=f"{quirky.url}/v1", connect_timeout=5, read_timeout=30, max_retries=0
    )
    request_ids = [f"linger-{uuid.uuid4().hex[:12]}" for _ in range(2)]

    async def two_answers() -> None:
        client = ChatModelClient(endpoint)
        try:
            for request_id in request_ids:
                chunks = client.stream_chat(
                    model="slow-ok",
                    messages=[{"role": "user", "content": "Hi"}],
                    request_id=request_id,
                )
                assert "".join([chunk.content async for chunk in chunks])
        finally:
            await client.aclose()

    asyncio.run(two_answers())

    records = httpx.get(f"{quirky.url}/_quirks/requests").json()["data"]
    first, second = (next(r for r in records if r["request_id"] == rid) for rid in request_ids)
    assert first["client_address"] == second["client_address"], "a new connection each time"
