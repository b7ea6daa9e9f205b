"""Production settings: the README's pass `check --deploy` cleanly, and every response the
application serves, static files included, carries the security headers."""

import asyncio
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.core.asgi import get_asgi_application

from chatsite.asgi import SecureStaticFilesHandler
from tests.servers import ROOT

STYLESHEET = "/static/conversations/chat.css"


def documented_production_env() -> dict[str, str]:
    """The environment shown in the README's Production section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    production = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    block = next(
        block
        for block in re.findall(r"```sh\n(.*?)```", production, flags=re.DOTALL)
        if "SECURE_HSTS_SECONDS=" in block
    )
    pairs = (line.strip().split("=", 1) for line in block.splitlines() if "=" in line)
    return {name: value for name, value in pairs}


def test_the_documented_production_settings_pass_check_deploy_without_a_warning(tmp_path):
    documented = documented_production_env()
    assert documented["DEBUG"] == "0" and documented["SECURE_SSL_REDIRECT"] == "1"
    env = {
        # Nothing from the test run's own environment but what finds the programs.
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DJANGO_SETTINGS_MODULE": "chatsite.settings",
        **documented,
        # The placeholders, filled in: a real key, and SQLite (checks open no connection).
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
    }
    assert not [value for value in env.values() if "<" in value]

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout
    assert "WARNING" not in result.stderr.upper(), result.stderr


async def get(
    app, path: str, *, scheme: str = "http", host: str = "testserver"
) -> tuple[int, dict[str, str]]:
    """Send one GET through an ASGI application; return the status and the headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "server": (host, 443 if scheme == "https" else 80),
        "client": ("127.0.0.1", 50000),
    }
    messages = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected until the response ends

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return start["status"], headers


@pytest.fixture
def static_app(settings):
    """The application as chatsite.asgi builds it with SERVE_STATIC on, HSTS on."""
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    return SecureStaticFilesHandler(get_asgi_application())


def test_static_files_served_by_the_app_carry_the_security_headers(static_app):
    status, headers = asyncio.run(get(static_app, STYLESHEET, scheme="https"))

    assert status == 200 and headers["content-type"].startswith("text/css")
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["strict-transport-security"] == "max-age=3600; includeSubDomains"
    # The site's policy too: an SVG or HTML file opened on its own runs no script of its own.
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "object-src 'none'" in policy


def test_a_missing_static_file_is_a_404_with_the_headers_too(static_app, db):
    status, headers = asyncio.run(get(static_app, "/static/no-such-file.css", scheme="https"))
    assert status == 404
    assert headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" in headers


def test_hsts_is_sent_only_over_https(static_app):
    status, headers = asyncio.run(get(static_app, STYLESHEET))
    assert status == 200 and "strict-transport-security" not in headers
    assert headers["x-content-type-options"] == "nosniff"


def test_static_files_follow_the_ssl_redirect(settings):
    settings.SECURE_SSL_REDIRECT = True
    app = SecureStaticFilesHandler(get_asgi_application())
    status, headers = asyncio.run(get(app, STYLESHEET))
    assert status == 301 and headers["location"] == f"https://testserver{STYLESHEET}"


def test_a_bad_host_on_a_static_file_is_a_400_not_a_crash(settings):
    settings.SECURE_SSL_REDIRECT = True
    app = SecureStaticFilesHandler(get_asgi_application())
    status, _ = asyncio.run(get(app, STYLESHEET, host="evil.example"))
    assert status == 400
