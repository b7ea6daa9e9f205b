"""A greedy client in a process of its own (so that the test's own clients do not share its
interpreter): LOOPS tasks attach to an answer's events and leave after the first chunk,
again and again, until SECONDS are over; then it prints how many times they did.

    python -m tests.faults.flood BASE_URL KEY REQUEST_ID LOOPS SECONDS
"""

import asyncio
import sys

import httpx


async def flood(base_url: str, key: str, request_id: str, loops: int, seconds: float) -> int:
    cycles = 0
    limits = httpx.Limits(max_connections=loops + 10)
    headers = {"Authorization": f"Bearer {key}"}
    url = f"/api/turns/{request_id}/events"
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def attach_and_leave() -> None:
            nonlocal cycles
            while True:
                async with http.stream("GET", url, headers=headers) as response:
                    async for _ in response.aiter_raw():
                        break  # leave after the first chunk
                cycles += 1

        tasks = [asyncio.create_task(attach_and_leave()) for _ in range(loops)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return cycles


if __name__ == "__main__":
    base_url, key, request_id, loops, seconds = sys.argv[1:6]
    print(asyncio.run(flood(base_url, key, request_id, int(loops), float(seconds))), flush=True)
