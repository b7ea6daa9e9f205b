"""The database goes away under a running site: no turn is lost, and no request pays for it
afterwards.

A throwaway PostgreSQL cluster (its own directory and port) is stopped and started while
chatsite streams answers and its psycopg pool holds connections to it. Turns that end while
it is away are spooled to disk and replayed into it, exactly once, when it is back; the pool
checks a connection before handing it out, so the dead ones are replaced instead of failing
requests.
"""

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.faults.cluster import ThrowawayCluster
from tests.faults.streams import stream_in_thread
from tests.servers import ROOT, start_site

pytestmark = [pytest.mark.faults, pytest.mark.live]


@pytest.fixture(scope="module")
def cluster():
    cluster = ThrowawayCluster().init()
    cluster.start()
    cluster.create_database("chatsite_faults")
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def cluster_env(cluster, site_env, spool_dir) -> dict[str, str]:
    """The environment of chatsite on the throwaway cluster (migrated), with a full pool of
    10 and a spool directory of its own."""
    return os.environ | {
        **site_env,
        "TURN_SPOOL_DIR": str(spool_dir),
        "DATABASE_URL": cluster.url("chatsite_faults"),
        "DATABASE_POOL_MIN_SIZE": "10",
        "DATABASE_POOL_MAX_SIZE": "10",
        "DATABASE_POOL_TIMEOUT": "2",
    }


@pytest.fixture(scope="module")
def site_on_cluster(cluster_env, server_logs):
    """chatsite on the throwaway cluster, and an API key."""
    manage = [sys.executable, "manage.py"]
    run_env = cluster_env
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=run_env, check=True)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "fault", "--email", "f@f.test"],
        cwd=ROOT,
        env=run_env | {"DJANGO_SUPERUSER_PASSWORD": "fault-password-unused"},
        check=True,
        capture_output=True,
    )
    key = subprocess.run(
        [*manage, "create_api_key", "fault"],
        cwd=ROOT,
        env=run_env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site = start_site(server_logs, cluster_env)
    yield site, key
    site.stop()


def test_after_a_one_second_database_restart_the_next_20_requests_all_succeed(
    cluster, site_on_cluster
):
    site, key = site_on_cluster
    client = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {key}"})

    def list_conversations(_: int) -> int:
        return client.get("/api/conversations/").status_code

    # Every pooled connection has been used: all 10 are open when the database goes away.
    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(list_conversations, range(30))) == {200}

    cluster.restart(pause=1.0)

    statuses = [list_conversations(n) for n in range(20)]
    assert statuses == [200] * 20


def test_a_request_while_the_database_is_down_is_a_json_503_and_writes_nothing(
    cluster, site_on_cluster
):
    site, key = site_on_cluster
    auth = {"Authorization": f"Bearer {key}"}
    cluster.stop()
    try:
        for path, body in [
            ("/api/conversations/", {"message": "[[devllm tokens=3]] Are you there?"}),
            (
                "/v1/chat/completions",
                {"model": "dev/dev-chat", "messages": [{"role": "user", "content": "Hi"}]},
            ),
        ]:
            response = httpx.post(
                f"{site.url}{path}",
                json=body,
                headers=auth | {"X-Request-ID": "during-outage-1"},
                timeout=30,
            )
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) > 0
            assert "Try again in" in response.json()["error"]["message"]
    finally:
        cluster.start()

    with psycopg.connect(cluster.url("chatsite_faults")) as db:
        written = db.execute(
            "select count(*) from conversations_message where request_id = %s",
            ("during-outage-1",),
        ).fetchone()[0]
    assert written == 0
    # And once the database is back, so is the site (the pool reconnects with a back-off).
    deadline = time.monotonic() + 20
    while httpx.get(f"{site.url}/api/conversations/", headers=auth, timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the site did not come back with its database"
        time.sleep(0.2)


def test_20_streams_through_a_30_second_outage_are_each_saved_exactly_once(
    cluster, cluster_env, site_on_cluster, spool_dir, tmp_path
):
    site, key = site_on_cluster
    message = "[[devllm tokens=30 delay_ms=100]] Keep talking while the database is away."
    streams = [stream_in_thread(site.url, key, f"outage-{n:02d}", message) for n in range(20)]
    for stream in streams:
        assert stream.started.wait(30), stream
    cluster.stop()
    stopped_at = time.monotonic()
    try:
        for stream in streams:
            assert stream.ended.wait(60), stream
        # Every client got the whole answer, and was told it is kept safe on disk, within
        # five seconds of its last token: the save learns the database is gone, and the
        # spool writes do not queue behind the saves that wait for it.
        for stream in streams:
            assert not stream.broken, stream.broken
            assert stream.deltas == 30
            assert stream.final.name == "done"
            assert (stream.final.data["status"], stream.final.data["record"]) == (
                "completed",
                "spooled",
            )
            last_token = next(e for e in reversed(stream.events) if e.name == "delta")
            assert stream.final.at - last_token.at < 5.0, stream.final.at - last_token.at
        kept = tmp_path / "kept"
        shutil.copytree(spool_dir, kept)
        time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
    finally:
        cluster.start()

    def saved_answers() -> dict[str, tuple]:
        with psycopg.connect(cluster.url("chatsite_faults")) as db:
            rows = db.execute(
                "select request_id, status, content from conversations_message "
                "where is_answer and request_id like 'outage-%'"
            ).fetchall()
        return {request_id: (status, content) for request_id, status, content in rows}

    def usage() -> tuple:
        with psycopg.connect(cluster.url("chatsite_faults")) as db:
            query = "select sum(tokens), sum(answers) from conversations_dailyusage"
            return db.execute(query).fetchone()

    # The site replays its spool by itself once the database is back.
    deadline = time.monotonic() + 60
    while any(status != "completed" for status, _ in saved_answers().values()):
        assert time.monotonic() < deadline, saved_answers()
        time.sleep(0.5)
    answers = saved_answers()
    assert len(answers) == 20  # one answer row per request ID
    for stream in streams:
        assert answers[stream.request_id] == ("completed", stream.text)
    before = usage()

    # Replaying the same spool again, twice, writes nothing twice.
    for path in kept.iterdir():
        shutil.copy(path, spool_dir / path.name)
    replay = [sys.executable, "manage.py", "replay_spooled_turns"]
    outputs = [
        subprocess.run(
            replay, cwd=ROOT, env=cluster_env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    assert "0 turn(s) saved, 20 already saved" in outputs[0].stdout
    assert "0 turn(s) saved, 0 already saved" in outputs[1].stdout
    assert saved_answers() == answers
    assert usage() == before


def test_after_a_35_second_outage_the_pool_serves_again_within_2_seconds(cluster, site_on_cluster):
    """psycopg_pool waited ever longer between attempts to reconnect (1, 2, 4… 32 s): after a
    35-second outage, saves still failed 13 s after the database was back."""
    site, key = site_on_cluster
    client = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert client.get("/api/conversations/").status_code == 200
    cluster.stop()
    try:
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline:  # requests meet the outage meanwhile
            assert client.get("/api/conversations/").status_code == 503
            time.sleep(1)
    finally:
        cluster.start()
    back_at = time.monotonic()
    while client.get("/api/conversations/").status_code != 200:
        assert time.monotonic() - back_at < 10, "the pool did not come back"
        time.sleep(0.1)
    recovered_after = time.monotonic() - back_at
    saved = stream_in_thread(site.url, key, "after-35s", "[[devllm tokens=3]] Saved?")
    assert saved.ended.wait(30), saved

    assert recovered_after < 2.0
    assert saved.final.data["record"] == "saved"
