"""The site as `make run` starts it, on its embedded defaults: SQLite, no Redis (the
in-process cache, event log, leases and channel layer), the development LLM server, a demo
user. An answer streams, is saved, can be re-read from its events, and a SIGTERM ends a
running one as interrupted.
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import log_in
from tests.servers import ROOT, start_site
from tests.sse_client import SseReader

pytestmark = pytest.mark.live


def embedded_env(tmp_path, devllm) -> dict[str, str]:
    env = {
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "LLM_ENDPOINTS_FILE": "",
        "DEVLLM_URL": f"{devllm.url}/v1",
        "TURN_SPOOL_DIR": str(tmp_path / "spool"),
        "SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    return {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | env


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory, devllm) -> Path:
    """A database as `make run` prepares it (migrated, with the demo user), made once: each
    test starts from a copy."""
    folder = tmp_path_factory.mktemp("embedded")
    for command in (["migrate", "-v", "0"], ["create_demo_user"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=embedded_env(folder, devllm),
            check=True,
            capture_output=True,
        )
    return folder / "db.sqlite3"


@pytest.fixture
def embedded_site(tmp_path, devllm, server_logs, demo_database):
    database = tmp_path / "db.sqlite3"
    shutil.copyfile(demo_database, database)
    site = start_site(server_logs, embedded_env(tmp_path, devllm))
    yield site, database
    site.stop()


def answer_row(database, request_id: str) -> tuple:
    with sqlite3.connect(database) as db:
        return db.execute(
            "select status, content from conversations_message where is_answer and request_id = ?",
            (request_id,),
        ).fetchone()


def test_an_answer_streams_is_saved_and_its_events_can_be_read_again(embedded_site):
    site, database = embedded_site
    client = log_in(site.url, "demo", "demo-password")
    message = {"message": "[[devllm echo]] Plain words for the embedded site"}

    with client.stream(
        "POST", "/api/conversations/", json=message, headers={"X-Request-ID": "embedded-01"}
    ) as response:
        assert response.status_code == 200
        events = SseReader(response).read()
    replay = client.get("/api/turns/embedded-01/events", params={"after": 0})

    text = "".join(e.data["content"] for e in events if e.name == "delta")
    assert text == "Plain words for the embedded site"
    assert (events[-1].name, events[-1].data["status"], events[-1].data["record"]) == (
        "done",
        "completed",
        "saved",
    )
    assert answer_row(database, "embedded-01") == ("completed", text)
    assert replay.status_code == 200 and replay.text.count("event: delta") == sum(
        e.name == "delta" for e in events
    )


def test_a_sigterm_ends_a_running_answer_as_interrupted(embedded_site):
    site, database = embedded_site
    client = log_in(site.url, "demo", "demo-password")
    words = " ".join(f"w{i}" for i in range(60))
    message = {"message": f"[[devllm echo delay_ms=100]] {words}"}

    with client.stream(
        "POST", "/api/conversations/", json=message, headers={"X-Request-ID": "embedded-02"}
    ) as response:
        reader = SseReader(response)
        events = reader.read(until_id=4)
        site.process.send_signal(signal.SIGTERM)
        events += reader.read()

    text = "".join(e.data["content"] for e in events if e.name == "delta")
    assert (events[-1].name, events[-1].data["status"]) == ("error", "interrupted")
    assert 0 < len(text) < len(words)
    assert site.process.wait(timeout=30) is not None
    assert answer_row(database, "embedded-02") == ("interrupted", text)
