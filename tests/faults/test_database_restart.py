"""The database restarts under a running site: no request pays for it afterwards.

A throwaway PostgreSQL cluster (its own directory and port) is restarted while chatsite's
psycopg pool holds connections to it. The pool checks a connection before handing it out,
so the dead ones are replaced instead of failing requests.
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.faults.cluster import ThrowawayCluster
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
def site_on_cluster(cluster, site_env, server_logs):
    """chatsite on the throwaway cluster, with a full pool of 10, and an API key."""
    env = {
        **site_env,
        "DATABASE_URL": cluster.url("chatsite_faults"),
        "DATABASE_POOL_MIN_SIZE": "10",
        "DATABASE_POOL_MAX_SIZE": "10",
        "DATABASE_POOL_TIMEOUT": "2",
    }
    manage = [sys.executable, "manage.py"]
    run_env = os.environ | env
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
    site = start_site(server_logs, env)
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
