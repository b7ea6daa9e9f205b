"""The save is not an ordinary post-stream hook: a hook path that does not import, or a hook
that fails, never keeps a turn from being saved, and `manage.py check` names a bad path."""

import subprocess
import sys

import pytest

from conversations.models import Message
from tests.conftest import log_in
from tests.servers import ROOT, start_site
from tests.sse_client import post_stream
from tests.waiting import wait_for

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HOOKS = "no.such.module.hook,tests.post_stream_hooks.explode,tests.post_stream_hooks.record"


def test_manage_py_check_names_a_hook_path_that_does_not_import(site_env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**site_env, "POST_STREAM_HOOKS": HOOKS, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "conversations.E003" in result.stderr
    assert "'no.such.module.hook' cannot be imported" in result.stderr
    assert "explode" not in result.stderr  # it imports; failing is its own business


def test_turns_are_saved_whatever_the_hooks_do(site_env, server_logs, tmp_path, alice):
    recorded = tmp_path / "hooks.txt"
    env = {**site_env, "POST_STREAM_HOOKS": HOOKS, "HOOK_RECORD_FILE": str(recorded)}
    site = start_site(server_logs, env)
    try:
        client = log_in(site.url, "alice")
        stream = post_stream(
            client, {"message": "[[devllm tokens=5]] Hooks?"}, headers={"X-Request-ID": "hooked-01"}
        )
    finally:
        site.stop()

    assert stream.events[-1].data["status"] == "completed"
    answer = Message.objects.get(request_id="hooked-01", is_answer=True)
    assert (answer.status, answer.content) == ("completed", stream.content)
    # The hook after the failing one still ran, after the save.
    assert wait_for(lambda: recorded.exists() and recorded.read_text()) == "hooked-01 completed\n"
