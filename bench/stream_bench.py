"""Measure chatsite's streaming against the bare development LLM server, side by side in one run.

Starts the development LLM server and one chatsite process (daphne unless BENCH_SERVER says
uvicorn, the production server, or granian; with the README's raised backlog and no access
log). For each concurrency level it streams the same answers
straight from the LLM server (the baseline), through chatsite's /v1/chat/completions (an API
key) and through the chat page's event stream (/chat/stream/, a logged-in session), and
reports:

* time to the first token (the first chunk with text), p50 and p99, and the time chatsite
  *adds* over the baseline at the same level;
* the time between two chunks with text, p50 (bursts show up as a low p50 and gaps);
* completed streams per second, errors, and the server's CPU milliseconds per stream;
* saved turns against requests sent (every chatsite request must leave one saved answer);

then /v1 at each BENCH_RAMP level in turn, up to the first with an error (the highest level
held with no errors); then the server's resident memory at idle and with BENCH_IDLE_STREAMS
answers held open at once (the model silent), per open stream. It prints a table and writes
JSON (BENCH_JSON, default bench/results/latest.json). Timings on a shared machine move from
run to run: compare within one run.

    make bench                                   # levels 1, 50, 200; 1000 idle streams
    BENCH_LEVELS=1,50 BENCH_STREAMS=400 make bench
    BENCH_RAMP=400,800,1600 make bench           # then /v1 at each until one has errors
    BENCH_LEVELS=1 BENCH_FIRST_TOKEN_MS=200 make bench   # a model slower to its first token
"""

import asyncio
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import (  # noqa: E402
    ServerProcess,
    free_port,
    start_devllm,
    start_site,
)

LEVELS = [int(n) for n in os.environ.get("BENCH_LEVELS", "1,50,200").split(",") if n]
# Higher levels, /v1 only, tried in turn until one has an error: the highest held is reported.
RAMP = [int(n) for n in os.environ.get("BENCH_RAMP", "400,800").split(",") if n]
STREAMS = int(os.environ.get("BENCH_STREAMS", "200"))  # per surface and level (1: 30)
SINGLE_STREAMS = int(os.environ.get("BENCH_SINGLE_STREAMS", "30"))
IDLE_STREAMS = int(os.environ.get("BENCH_IDLE_STREAMS", "1000"))
SERVER = os.environ.get("BENCH_SERVER", "daphne")
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
JSON_PATH = Path(os.environ.get("BENCH_JSON", ROOT / "bench" / "results" / "latest.json"))
TOKENS = 50
DELAY_MS = 5
# Extra time the model takes before its first token (a hosted model takes 100s of ms).
FIRST_TOKEN_MS = float(os.environ.get("BENCH_FIRST_TOKEN_MS", "0"))
PROMPT = (
    f"[[devllm tokens={TOKENS} delay_ms={DELAY_MS} first_token_ms={FIRST_TOKEN_MS:g}]] "
    "Benchmark me."
)
SILENT = "[[devllm hang_before]] Hold the line."
# The bench user's password (it logs in for the chat page's stream; a local test database).
BENCH_PASSWORD = "bench-password-unused"


@dataclass
class StreamResult:
    ok: bool
    status: int = 0  # the HTTP status, 0 when there was none (a broken connection)
    first_token: float = 0.0  # seconds from the request to the first chunk with text
    gaps: list[float] = field(default_factory=list)  # seconds between chunks with text


@dataclass
class LevelResult:
    surface: str
    concurrency: int
    streams: int
    errors: int
    streams_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    gap_p50_ms: float
    cpu_ms_per_stream: float | None
    saved: int | None = None
    # Of the errors, requests refused with 503 or 429 (to retry; nothing was written).
    refused: int = 0
    added_ttft_p50_ms: float | None = None


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a server's workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and its workers (those alive now)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its workers."""
    total = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


# A data line with non-empty content: an OpenAI chunk's delta, or a `delta` event's data.
TEXT = re.compile(r'^data: \{.*"content": ?"[^"]')


def has_text(line: str) -> bool:
    """Whether an SSE line carries answer text (start, done and empty deltas do not)."""
    return TEXT.match(line) is not None


async def one_stream(
    client: httpx.AsyncClient, url: str, body: dict, headers: dict
) -> StreamResult:
    started = time.perf_counter()
    seen: list[float] = []
    try:
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return StreamResult(ok=False, status=response.status_code)
            async for line in response.aiter_lines():
                if has_text(line):
                    seen.append(time.perf_counter())
    except httpx.HTTPError:
        return StreamResult(ok=False)
    if len(seen) < TOKENS:
        return StreamResult(ok=False)
    return StreamResult(
        ok=True,
        first_token=seen[0] - started,
        gaps=[b - a for a, b in itertools.pairwise(seen)],
    )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def drive(url: str, headers: dict, body: dict, concurrency: int, count: int, prefix: str):
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await one_stream(client, url, body, headers | {"X-Request-ID": f"{prefix}-warmup"})
        gate = asyncio.Semaphore(concurrency)

        async def gated(n: int) -> StreamResult:
            async with gate:
                return await one_stream(
                    client, url, body, headers | {"X-Request-ID": f"{prefix}-{n:05d}"}
                )

        started = time.perf_counter()
        results = await asyncio.gather(*(gated(n) for n in range(count)))
        elapsed = time.perf_counter() - started
    return results, elapsed


def measure(
    surface: str,
    server: ServerProcess,
    url: str,
    headers: dict,
    body: dict,
    concurrency: int,
    *,
    saved_count=None,
) -> LevelResult:
    count = SINGLE_STREAMS if concurrency == 1 else max(STREAMS, 2 * concurrency)
    prefix = f"bench-{surface.split()[0].strip('/')}-{concurrency}-{time.time_ns()}"
    cpu_before = cpu_seconds(server.process.pid)
    results, elapsed = asyncio.run(drive(url, headers, body, concurrency, count, prefix))
    cpu = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / (count + 1)
    good = [r for r in results if r.ok]
    firsts = [r.first_token * 1000 for r in good]
    gaps = [g * 1000 for r in good for g in r.gaps]
    result = LevelResult(
        surface=surface,
        concurrency=concurrency,
        streams=count,
        errors=count - len(good),
        streams_per_s=len(good) / elapsed,
        ttft_p50_ms=percentile(firsts, 50),
        ttft_p99_ms=percentile(firsts, 99),
        gap_p50_ms=percentile(gaps, 50),
        cpu_ms_per_stream=cpu,
        refused=sum(r.status in (429, 503) for r in results),
    )
    if saved_count is not None:
        time.sleep(1)  # the last saves land after the last bytes
        result.saved = saved_count(prefix)
    return result


async def hold_idle_streams(url: str, headers: dict, count: int) -> list:
    """Open `count` site-API streams whose model stays silent; return them, open, once each
    has its `start` event. Each response's line iterator is kept with it: dropping one closes
    the response, and the server would see its client leave (an earlier version measured
    streams that were closed)."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=0)
    client = httpx.AsyncClient(timeout=300, limits=limits)
    gate = asyncio.Semaphore(50)  # open them 50 at a time, as users arrive

    async def open_one(n: int):
        async with gate:
            request = client.build_request(
                "POST",
                url,
                json={"message": SILENT},
                headers=headers | {"X-Request-ID": f"bench-idle-{n:05d}-{time.time_ns()}"},
            )
            response = await client.send(request, stream=True)
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"an idle stream was refused: {response.status_code}")
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("event: start"):
                    return response, lines
            raise RuntimeError("an idle stream ended before it started")

    responses = await asyncio.gather(*(open_one(n) for n in range(count)))
    return [client, responses]


async def streams_held(base_url: str, count: int, patience: float = 30) -> dict:
    """Wait until the server says it runs `count` answers with `count` readers attached (the
    held streams, truly open); return what /health says."""
    deadline = time.monotonic() + patience
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            health = (await client.get(f"{base_url}/health")).json()
            if health["running_turns"] >= count and health.get("readers", count) >= count:
                return health
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server does not hold {count} open streams: {health}")
            await asyncio.sleep(0.5)


def session_headers(base_url: str, username: str, password: str) -> dict:
    """Log in through the login form, as a browser does: the session cookie and the CSRF
    token the chat page sends with each message."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.get("/accounts/login/")
        token = client.cookies["csrftoken"]
        response = client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        )
        if response.status_code != 302:
            raise SystemExit(f"the bench user could not log in: {response.status_code}")
        cookies = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        return {"Cookie": cookies, "X-CSRFToken": client.cookies["csrftoken"]}


def saved_counter(database_url: str):
    """Count saved (no longer streaming) answers whose request ID starts with a prefix."""
    query = (
        "select count(*) from conversations_message where is_answer and status <> 'streaming' "
        "and request_id like %s"
    )

    def count(prefix: str) -> int:
        if database_url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(database_url.split("///", 1)[1]) as db:
                return db.execute(query.replace("%s", "?"), (prefix + "-%",)).fetchone()[0]
        import psycopg

        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as db:
            return db.execute(query, (prefix + "-%",)).fetchone()[0]

    return count


def refresh_statistics(database_url: str) -> None:
    """ANALYZE the bench's PostgreSQL database. Autovacuum does this in production, but may
    be off (it is on the development machine): with the statistics of a nearly empty table,
    the planner filters a user's thousands of API conversations instead of using the thread
    index, and a prompt save took 7 ms instead of 3."""
    if database_url.startswith("sqlite"):
        return
    import psycopg

    with psycopg.connect(
        database_url.replace("postgres://", "postgresql://"), autocommit=True
    ) as db:
        db.execute("ANALYZE")


def settle(site: ServerProcess, timeout: float = 120) -> None:
    """Wait until the site runs no answer (the idle streams' stopped turns are saved), so
    that the next measurement starts quiet."""
    deadline = time.monotonic() + timeout
    quiet = 0  # with several workers, each answer comes from one of them: ask a few times
    while quiet < 3 * WORKERS:
        if httpx.get(f"{site.url}/health", timeout=10).json()["running_turns"]:
            quiet = 0
            if time.monotonic() > deadline:
                raise RuntimeError("the site did not settle")
            time.sleep(0.5)
        else:
            quiet += 1


def start_chatsite(logs: Path, env: dict) -> ServerProcess:
    if SERVER not in ("daphne", "uvicorn", "granian"):
        raise SystemExit(f"BENCH_SERVER must be daphne, uvicorn or granian, not {SERVER!r}")
    return start_site(logs, env, server=SERVER, workers=WORKERS)


def print_table(rows: list[LevelResult]) -> None:
    print(
        f"{'surface':<28}{'conc':>5}{'streams/s':>11}{'errors':>7}{'TTFT p50':>10}"
        f"{'p99':>8}{'added':>8}{'gap p50':>9}{'CPU/stream':>12}{'saved':>12}"
    )
    for r in rows:
        added = "" if r.added_ttft_p50_ms is None else f"{r.added_ttft_p50_ms:+.1f}"
        saved = "" if r.saved is None else f"{r.saved}/{r.streams + 1}"
        errors = f"{r.errors} ({r.refused} refused)" if r.refused else str(r.errors)
        cpu = "" if r.cpu_ms_per_stream is None else f"{r.cpu_ms_per_stream:.1f} ms"
        print(
            f"{r.surface:<28}{r.concurrency:>5}{r.streams_per_s:>11.1f}{errors:>7}"
            f"{r.ttft_p50_ms:>8.1f}ms{r.ttft_p99_ms:>6.0f}ms{added:>8}{r.gap_p50_ms:>7.1f}ms"
            f"{cpu:>12}{saved:>12}",
            flush=True,
        )


def main() -> None:
    logs = Path(tempfile.mkdtemp(prefix="chatsite-bench-"))
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{logs / 'bench.sqlite3'}"
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_COOKIES": "0",  # plain HTTP on this machine: the session cookie must go back
        "DATABASE_URL": database_url,
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "MAX_CONCURRENT_STREAMS": "100000",
        "MAX_RUNNING_TURNS": str(max(2000, IDLE_STREAMS * 2)),
        "LLM_MAX_CONNECTIONS": str(max(2000, IDLE_STREAMS * 2)),
        "LLM_READ_TIMEOUT": "300",
        "CHAT_FIRST_TOKEN_DEADLINE": "300",
        "SITE_API_FIRST_TOKEN_DEADLINE": "300",
        # The idle streams end when the bench closes them, not 5 minutes later.
        "SITE_API_DISCONNECT_POLICY": "cancel",
        "TURN_SPOOL_DIR": str(logs / "spool"),
        "LOG_LEVEL": "WARNING",
        "CACHE_KEY_PREFIX": f"bench-{free_port()}",
    }
    devllm = start_devllm(logs, delay_ms=DELAY_MS)
    env["DEVLLM_URL"] = f"{devllm.url}/v1"
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=os.environ | env, check=True)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "bench", "--email", "b@b.test"],
        cwd=ROOT,
        env=os.environ | env | {"DJANGO_SUPERUSER_PASSWORD": BENCH_PASSWORD},
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
    refresh_statistics(database_url)
    site = start_chatsite(logs, env)
    auth = {"Authorization": f"Bearer {key}"}
    count_saved = saved_counter(database_url)
    redis = "Redis" if os.environ.get("REDIS_URL") else "no Redis"
    machine = (
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"database {database_url.split(':')[0]}, {redis}"
    )
    print(
        f"{machine}; {SERVER} with {WORKERS} worker(s); answers of {TOKENS} tokens, "
        f"{DELAY_MS} ms apart",
        flush=True,
    )
    rows: list[LevelResult] = []
    memory: dict[str, float] = {}
    held = 0
    try:
        session = session_headers(site.url, "bench", BENCH_PASSWORD)
        openai_body = {"messages": [{"role": "user", "content": PROMPT}], "stream": True}
        # Memory first, before any load has grown the heap: idle after one answer, then with
        # IDLE_STREAMS answers held open at once.
        asyncio.run(
            drive(
                site.url + "/api/conversations/",
                auth,
                {"message": PROMPT},
                1,
                1,
                f"bench-warm-{time.time_ns()}",
            )
        )
        memory["idle_mb"] = rss_mb(site.process.pid)
        if IDLE_STREAMS:

            async def hold() -> float:
                client, responses = await hold_idle_streams(
                    site.url + "/api/conversations/", auth, IDLE_STREAMS
                )
                health = await streams_held(site.url, IDLE_STREAMS)
                await asyncio.sleep(2)  # the heap settles (checkpoints, the first keep-alives)
                held = rss_mb(site.process.pid)
                print(
                    f"held {IDLE_STREAMS} open streams: the server runs "
                    f"{health['running_turns']} answers, {health.get('readers')} readers",
                    flush=True,
                )
                for response, _ in responses:
                    await response.aclose()
                await client.aclose()
                return held

            memory["held_mb"] = asyncio.run(hold())
            memory["per_open_stream_kb"] = (
                (memory["held_mb"] - memory["idle_mb"]) * 1024 / IDLE_STREAMS
            )
            settle(site)
        for level in LEVELS:
            refresh_statistics(database_url)
            base = measure(
                "upstream, direct",
                devllm,
                f"{devllm.url}/v1/chat/completions",
                {},
                openai_body | {"model": "dev-chat"},
                level,
            )
            base.cpu_ms_per_stream = None
            rows.append(base)
            for surface, url, headers, body in (
                (
                    "chatsite /v1",
                    "/v1/chat/completions",
                    auth,
                    openai_body | {"model": "dev/dev-chat"},
                ),
                ("chatsite chat page (SSE)", "/chat/stream/", session, {"message": PROMPT}),
            ):
                row = measure(
                    surface, site, site.url + url, headers, body, level, saved_count=count_saved
                )
                row.added_ttft_p50_ms = row.ttft_p50_ms - base.ttft_p50_ms
                rows.append(row)
            print_table(rows[-3:])
        held = max(LEVELS, default=0)
        for level in RAMP:
            refresh_statistics(database_url)
            row = measure(
                "chatsite /v1 (ramp)",
                site,
                site.url + "/v1/chat/completions",
                auth,
                openai_body | {"model": "dev/dev-chat"},
                level,
                saved_count=count_saved,
            )
            rows.append(row)
            print_table(rows[-1:])
            if row.errors:
                break
            held = level
        print(f"highest level held with no errors: {held} concurrent streams", flush=True)
        print(
            f"resident memory: {memory.get('idle_mb', 0):.0f} MB idle; "
            f"{memory.get('held_mb', 0):.0f} MB with {IDLE_STREAMS} open streams "
            f"({memory.get('per_open_stream_kb', 0):.1f} KB each)",
            flush=True,
        )
    finally:
        site.stop()
        devllm.stop()
    JSON_PATH.parent.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(
        json.dumps(
            {
                "machine": machine,
                "server": SERVER,
                "workers": WORKERS,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "tokens": TOKENS,
                "delay_ms": DELAY_MS,
                "levels": [asdict(r) for r in rows],
                "highest_level_without_errors": held,
                "memory": memory,
            },
            indent=2,
        )
    )
    print(f"wrote {JSON_PATH}")


if __name__ == "__main__":
    main()
