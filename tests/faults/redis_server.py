"""A throwaway Redis for fault tests: its own port and directory, stopped and started at will,
and never persisting anything, so a restart comes back empty (as a Redis without persistence
does in production). The shared Redis on 6379 is never touched.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.servers import free_port


class ThrowawayRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chatsite-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "ThrowawayRedis":
        arguments = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--save": "",
            "--appendonly": "no",
            "--dir": str(self.root),
            "--maxclients": "10000",
            "--logfile": str(self.root / "redis.log"),
        }
        command = [shutil.which("redis-server") or "redis-server"]
        for name, value in arguments.items():
            command += [name, value]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill it: whatever it held is gone, and its clients' connections break."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
        deadline = time.monotonic() + 5
        while _listening(self.port):  # the port is free again before anyone restarts it
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} still in use")
            time.sleep(0.05)

    def restart(self, pause: float = 0.0) -> None:
        self.stop()
        time.sleep(pause)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
