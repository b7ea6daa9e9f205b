"""Measure chatsite's streaming proxy against the bare development LLM server, in one run.

Starts the development LLM server and one daphne process (as production runs it, `-v 0`),
then streams the same answers at a fixed concurrency straight from the LLM server (the
baseline), through chatsite's /v1/chat/completions and through its site API (the chat page's
events). It prints streams per second, time to
first byte, and the server's CPU time per stream, read from /proc. Timings on a shared
machine move from run to run: compare the ratios within one run.

    make bench                         # 200 streams, 50 at a time, per surface
    BENCH_STREAMS=400 BENCH_CONCURRENCY=100 make bench
"""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, free_port, start_devllm, start_site  # noqa: E402

STREAMS = int(os.environ.get("BENCH_STREAMS", "200"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "50"))
TOKENS = 50
PROMPT = f"[[devllm tokens={TOKENS} delay_ms=2]] Benchmark me."


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_stream(client: httpx.AsyncClient, url: str, body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    first_byte = None
    chunks = 0
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first_byte is None:
                first_byte = time.perf_counter() - started
            chunks += line.startswith("data: {")
    return first_byte or 0.0, chunks


async def run(url: str, headers: dict, body: dict) -> dict:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        await one_stream(client, url, body)  # warm up connections and caches
        gate = asyncio.Semaphore(CONCURRENCY)

        async def gated():
            async with gate:
                return await one_stream(client, url, body)

        started = time.perf_counter()
        results = await asyncio.gather(*(gated() for _ in range(STREAMS)))
        elapsed = time.perf_counter() - started
    ttfb = sorted(r[0] for r in results)
    assert all(r[1] >= TOKENS for r in results), "a stream came back short"
    return {
        "streams_per_s": STREAMS / elapsed,
        "ttfb_p50_ms": statistics.median(ttfb) * 1000,
        "ttfb_p95_ms": ttfb[int(len(ttfb) * 0.95) - 1] * 1000,
    }


def openai_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": True}


def measure(name: str, server: ServerProcess, url: str, headers: dict, body: dict) -> dict:
    cpu_before = cpu_seconds(server.process.pid)
    result = asyncio.run(run(url, headers, body))
    result["cpu_ms_per_stream"] = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / STREAMS
    print(
        f"{name:<28} {result['streams_per_s']:8.1f} streams/s   "
        f"first byte p50 {result['ttfb_p50_ms']:6.1f} ms  p95 {result['ttfb_p95_ms']:6.1f} ms   "
        f"server CPU {result['cpu_ms_per_stream']:5.2f} ms/stream",
        flush=True,
    )
    return result


def main() -> None:
    logs = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    db = logs / "bench.sqlite3"
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": os.environ.get("DATABASE_URL") or f"sqlite:///{db}",
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "MAX_CONCURRENT_STREAMS": "100000",
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": f"bench-{free_port()}",
    }
    devllm = start_devllm(logs, delay_ms=2)
    env["DEVLLM_URL"] = f"{devllm.url}/v1"
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=os.environ | env, check=True)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "bench", "--email", "b@b.test"],
        cwd=ROOT,
        env=os.environ | env | {"DJANGO_SUPERUSER_PASSWORD": "bench-password-unused"},
        capture_output=True,  # fails harmlessly when a reused database has the user already
    )
    key = subprocess.run(
        [*manage, "create_api_key", "bench"],
        cwd=ROOT,
        env=os.environ | env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site = start_site(logs, env)
    try:
        print(
            f"{STREAMS} streams of {TOKENS} tokens, {CONCURRENCY} at a time; "
            f"{os.cpu_count()} CPUs; database {env['DATABASE_URL'].split(':')[0]}",
            flush=True,
        )
        direct = f"{devllm.url}/v1/chat/completions"
        auth = {"Authorization": f"Bearer {key}"}
        base = measure("development server, direct", devllm, direct, {}, openai_body("dev-chat"))
        proxied = measure(
            "chatsite /v1 (daphne)",
            site,
            f"{site.url}/v1/chat/completions",
            auth,
            openai_body("dev/dev-chat"),
        )
        # The site API streams the chat page's events, the surface whose turns outlive it.
        site_api = measure(
            "chatsite site API (daphne)",
            site,
            f"{site.url}/api/conversations/",
            auth,
            {"message": PROMPT, "model": "dev/dev-chat"},
        )
        for name, result in (("/v1", proxied), ("site API", site_api)):
            throughput = result["streams_per_s"] / base["streams_per_s"]
            first_byte = result["ttfb_p50_ms"] / base["ttfb_p50_ms"]
            print(
                f"chatsite {name} / direct: throughput {throughput:.2f}x, "
                f"first byte p50 {first_byte:.2f}x"
            )
    finally:
        site.stop()
        devllm.stop()


if __name__ == "__main__":
    main()
