"""No client chooses its own address: uvicorn as the README runs it trusts no
X-Forwarded-For (chatsite reads the proxy's CLIENT_IP_HEADER itself), so a client sending a
new one with every guess still meets the per-address login limit."""

import re
import uuid
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, server_command, start_site

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

LIMIT = 5


@pytest.fixture
def uvicorn_site(site_env, server_logs):
    env = {
        **site_env,
        "CLIENT_IP_HEADER": "",
        "LOGIN_ADDRESS_FAILURE_LIMIT": str(LIMIT),
        "LOGIN_FAILURE_LIMIT": "100",
        "CACHE_KEY_PREFIX": f"address-{uuid.uuid4().hex[:8]}",
    }
    site = start_site(server_logs, env, server="uvicorn")
    yield site
    site.stop()


def test_a_new_x_forwarded_for_with_every_guess_does_not_dodge_the_address_limit(uvicorn_site):
    statuses = []
    for n in range(LIMIT + 3):
        with httpx.Client(base_url=uvicorn_site.url, timeout=30) as client:
            client.get("/accounts/login/")
            response = client.post(
                "/accounts/login/",
                data={
                    "username": f"nobody-{n}",  # another account each time: no account lock
                    "password": "a-guess",
                    "csrfmiddlewaretoken": client.cookies["csrftoken"],
                },
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            statuses.append(response.status_code)

    assert statuses == [200] * LIMIT + [429] * 3
    assert "from your network" in response.text


def test_the_readme_runs_uvicorn_and_nginx_so_that_no_client_picks_its_address():
    readme = (Path(ROOT) / "README.md").read_text()
    command = re.search(r"Run `(uvicorn chatsite\.asgi:application[^`]*)`", readme, re.S)
    assert command, "the README's production command"
    flags = " ".join(command.group(1).split())
    tested = server_command("uvicorn", 8000)
    for flag in ("--no-proxy-headers", "--backlog 1024", "--no-access-log", "--lifespan off"):
        assert flag in flags, flag
        assert flag.split()[0] in tested, flag
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in readme
    assert "proxy_set_header X-Real-IP $remote_addr;" in readme
