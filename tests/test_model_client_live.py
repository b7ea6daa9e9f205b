"""The model client against the development LLM server, over real HTTP."""

import asyncio

from conversations.providers.client import ChatModelClient
from conversations.providers.config import development_endpoints


def pooled_connections(client: ChatModelClient) -> list:
    # The SDK's httpx client, its transport, and that transport's connection pool.
    return client._sdk._client._transport._pool.connections


def test_answers_in_a_row_reuse_one_upstream_connection(devllm):
    """Each answer read to its [DONE] gives its connection back to the pool: no TCP handshake
    before the next answer's first token."""
    (endpoint,) = development_endpoints(
        devllm_url=f"{devllm.url}/v1", connect_timeout=5, read_timeout=30, max_retries=0
    )

    async def two_answers() -> tuple[list[str], list, list]:
        client = ChatModelClient(endpoint)
        texts, pools = [], []
        try:
            for n in range(2):
                chunks = client.stream_chat(
                    model="dev-chat",
                    messages=[{"role": "user", "content": f"[[devllm tokens=5]] Hello {n}"}],
                    request_id=f"pool-{n}",
                )
                texts.append("".join([chunk.content async for chunk in chunks]))
                pools.append(list(pooled_connections(client)))
        finally:
            await client.aclose()
        return texts, pools[0], pools[1]

    texts, after_first, after_second = asyncio.run(two_answers())

    assert all(texts), "both answers arrived"
    assert len(after_first) == 1, "the first answer's connection was closed, not pooled"
    assert after_second == after_first, "the second answer opened a new connection"
