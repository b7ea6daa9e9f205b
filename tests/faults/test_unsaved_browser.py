"""An answer the server can record nowhere (its database away, and its spool unwritable) says
so on the page: the text the user saw is kept in the browser and offered for copying, after
a reload too, when the server has only the part it had checkpointed.

A throwaway PostgreSQL cluster of the test's own is stopped mid-answer; the spool directory
lies under a plain file, so no spool can be written; Chromium shows the page.
"""

import os
import subprocess
import sys
import time

import psycopg
import pytest
from playwright.sync_api import expect

from tests.conftest import CACHE_PREFIX, PASSWORD, logged_in_page
from tests.faults.cluster import ThrowawayCluster
from tests.servers import ROOT, start_site
from tests.waiting import wait_for
from tests.web.test_resume_browser import body, last_answer, long_prompt, send

pytestmark = [pytest.mark.faults, pytest.mark.browser, pytest.mark.live]

END_MS = 60_000


@pytest.fixture
def site_without_a_record(site_env, server_logs, tmp_path):
    cluster = ThrowawayCluster().init()
    cluster.start()
    cluster.create_database("chatsite_unsaved")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the spool cannot be made here")
    env = os.environ | {
        **site_env,
        "DATABASE_URL": cluster.url("chatsite_unsaved"),
        "TURN_SPOOL_DIR": str(blocker / "spool"),
        "TURN_HEARTBEAT_STALE_SECONDS": "3",
        # The save attempt still waiting when the turn gave up gives up too, soon: the row
        # then keeps only its last checkpoint (else the attempt may land late, whole).
        "DATABASE_POOL_TIMEOUT": "2",
        "TURN_CHECKPOINT_SECONDS": "0.5",
        "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-unsaved-{time.monotonic_ns()}",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [*manage, "createsuperuser", "--noinput", "--username", "carol", "--email", "c@c.test"],
        cwd=ROOT,
        env=env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    site = start_site(server_logs, env)
    yield site, cluster
    site.stop()
    cluster.remove()


def test_an_answer_recorded_nowhere_is_kept_in_the_browser_and_offered_for_copying(
    browser, site_without_a_record
):
    site, cluster = site_without_a_record
    prompt = long_prompt(words=40, delay_ms=100)
    words = prompt.split("]] ", 1)[1]
    with logged_in_page(
        browser, site.url, "carol", permissions=["clipboard-read", "clipboard-write"]
    ) as page:
        page.wait_for_url("**/chat/")
        send(page, prompt)
        answer = last_answer(page)
        expect(body(answer)).to_contain_text("w10", timeout=END_MS)
        cluster.stop()

        notice = answer.locator(".message-unsaved")
        expect(notice).to_be_visible(timeout=END_MS)
        expect(notice).to_contain_text("could not be saved")
        expect(body(answer)).to_have_text(words)
        notice.get_by_role("button", name="Copy the answer").click()
        expect(notice.get_by_role("button")).to_contain_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == words

        # The database comes back; the answer's row, never saved, is swept as interrupted
        # with the text of its last checkpoint. A reload still offers what was seen.
        time.sleep(4)  # past the pool's timeout: the save's last attempt has failed
        cluster.start()
        wait_for(lambda: answer_status(cluster) == "interrupted", timeout=60, interval=0.5)
        page.reload()
        answer = last_answer(page)
        expect(answer).to_have_attribute("data-status", "interrupted", timeout=END_MS)
        assert len(body(answer).inner_text()) < len(words)  # the server has less
        notice = answer.locator(".message-unsaved")
        expect(notice).to_be_visible()
        page.evaluate("navigator.clipboard.writeText('')")
        notice.get_by_role("button", name="Copy the answer").click()
        expect(notice.get_by_role("button")).to_contain_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == words


def answer_status(cluster) -> str | None:
    with psycopg.connect(cluster.url("chatsite_unsaved")) as db:
        row = db.execute(
            "select status from conversations_message where is_answer order by id desc limit 1"
        ).fetchone()
    return row[0] if row else None
