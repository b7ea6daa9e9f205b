"""Start real server processes for the tests: the development LLM server and daphne."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
ASGI_APPLICATION = "chatsite.asgi:application"


def stop_all(servers: list["ServerProcess"]) -> None:
    """Send every server SIGTERM at once, then wait for each (killing one that hangs)."""
    for server in servers:
        server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        stop_all([self])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# Whether the running test may start servers: tests/conftest.py sets it for each test from
# its markers (`live` or `faults`), so that `make test-fast`, which leaves those out, never
# waits for a server. Outside pytest (the benchmarks) it stays true.
may_start_servers = True


def start_server(
    args: list[str], *, port: int, ready_path: str, log_path: Path, env: Mapping[str, str]
) -> ServerProcess:
    """Start `python <args>` and wait until GET ready_path answers (any status)."""
    return wait_until_ready(spawn_server(args, port=port, log_path=log_path, env=env), ready_path)


def spawn_server(
    args: list[str], *, port: int, log_path: Path, env: Mapping[str, str]
) -> ServerProcess:
    """Start `python <args>`, without waiting for it to answer."""
    if not may_start_servers:
        raise RuntimeError(f"A test that starts a server must be marked live: {args}")
    log = log_path.open("w")
    # A browser test's process allows Django's async-unsafe calls (Playwright runs an event
    # loop in its thread); a server it starts must not inherit that.
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env={**inherited, **env}, stdout=log, stderr=log
    )
    return ServerProcess(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)


def wait_until_ready(server: ServerProcess, ready_path: str) -> ServerProcess:
    """Wait until GET ready_path answers (any status); stop the server if it never does."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.process.args} exited early:\n{server.log()}")
        try:
            httpx.get(server.url + ready_path, timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.process.args} did not start in 30 s:\n{server.log()}")


def start_devllm(log_dir: Path, *, delay_ms: int = 20) -> ServerProcess:
    port = free_port()
    return start_server(
        ["-m", "devllm", "--port", str(port), "--delay-ms", str(delay_ms)],
        port=port,
        ready_path="/v1/models",
        log_path=log_dir / f"devllm-{port}.log",
        env={},
    )


def start_quirky_upstream(log_dir: Path) -> ServerProcess:
    """The misbehaving OpenAI-compatible upstream of tests/quirky_upstream.py."""
    port = free_port()
    return start_server(
        ["-m", "tests.quirky_upstream", "--port", str(port)],
        port=port,
        ready_path="/v1/models",
        log_path=log_dir / f"quirky-{port}.log",
        env={},
    )


def server_command(server: str, port: int, workers: int = 1) -> list[str]:
    """The arguments to `python` that serve chatsite under `server` as the README's
    production commands do: a raised listen backlog, no access log, and (uvicorn) no trust in
    X-Forwarded-For, which chatsite reads from CLIENT_IP_HEADER itself. uvicorn (the
    production server) and daphne (runserver's, and the alternative) are in requirements/;
    granian only when installed by hand (make bench compares it)."""
    if server == "daphne":
        endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=1024"
        return ["-m", "daphne", "-e", endpoint, "-v", "0", ASGI_APPLICATION]
    if server == "uvicorn":
        return [
            "-m", "uvicorn", ASGI_APPLICATION, "--host", "127.0.0.1", "--port", str(port),
            "--backlog", "1024", "--no-access-log", "--lifespan", "off", "--no-proxy-headers",
            "--log-level", "warning", "--workers", str(workers),
        ]  # fmt: skip
    if server == "granian":
        return [
            "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--backlog", "1024", "--no-access-log", "--log-level", "warning", "--workers",
            str(workers), ASGI_APPLICATION,
        ]  # fmt: skip
    raise ValueError(f"server must be daphne, uvicorn or granian, not {server!r}")


def start_site(
    log_dir: Path, env: Mapping[str, str], *, server: str = "daphne", workers: int = 1
) -> ServerProcess:
    """Start chatsite under `server` as production would run it."""
    (site,) = start_sites(log_dir, env, count=1, server=server, workers=workers)
    return site


def start_sites(
    log_dir: Path,
    env: Mapping[str, str],
    *,
    count: int,
    server: str = "daphne",
    workers: int = 1,
) -> list[ServerProcess]:
    """Start `count` chatsite processes at once (their start-ups overlap), then wait for all."""
    spawned = []
    try:
        for _ in range(count):
            port = free_port()
            spawned.append(
                spawn_server(
                    server_command(server, port, workers),
                    port=port,
                    log_path=log_dir / f"{server}-{port}.log",
                    env=env,
                )
            )
        return [wait_until_ready(site, "/accounts/login/") for site in spawned]
    except BaseException:
        stop_all(spawned)
        raise


def devllm_record(devllm, request_id: str) -> dict:
    response = httpx.get(f"{devllm.url}/_devllm/requests/{request_id}")
    assert response.status_code == 200, response.text
    return response.json()
