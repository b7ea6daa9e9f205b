"""Shared fixtures: named users, the development LLM server, and chatsite under daphne.

Tests that use a live server must be `django_db(transaction=True)`: the server process is
another database client and sees only committed rows.
"""

import contextlib
import copy
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test.utils import override_settings

from tests import servers
from tests.quirky_upstream import QUIRKS
from tests.servers import (
    ServerProcess,
    free_port,
    start_devllm,
    start_quirky_upstream,
    start_site,
    start_sites,
    stop_all,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

PASSWORD = "a-long-test-password"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Rate-limit counters, event logs, leases and channel-layer groups live in Redis, which is
# shared in CI: give each test process (each xdist worker too) its own key space, so that
# runs and workers (and the user IDs each one's database reuses) never share a key.
CACHE_PREFIX = f"chatsite-test-{uuid.uuid4().hex[:12]}"


# A test using these starts a server process or drives a browser, and must say so with its
# marker: `make test-fast` leaves those tests out by their markers.
SERVER_FIXTURES = {"site", "devllm", "quirky", "site_env", "endpoints_file"}
BROWSER_FIXTURES = {"browser", "page"}


def pytest_collection_modifyitems(config, items) -> None:
    unmarked = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES and not _starts_servers(item):
            unmarked.append(f"{item.nodeid}: uses a server, is not marked live")
        if fixtures & BROWSER_FIXTURES and item.get_closest_marker("browser") is None:
            unmarked.append(f"{item.nodeid}: drives a browser, is not marked browser")
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))


def pytest_runtest_setup(item) -> None:
    # Before the test's fixtures (setUpClass among them) start anything.
    servers.may_start_servers = _starts_servers(item)


def _starts_servers(item) -> bool:
    return any(item.get_closest_marker(name) for name in ("live", "faults"))


@pytest.fixture(scope="session", autouse=True)
def isolated_cache_keys() -> Iterator[None]:
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["KEY_PREFIX"] = CACHE_PREFIX
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    for name, layer in layers.items():
        if "prefix" in layer.get("CONFIG", {}):
            layer["CONFIG"]["prefix"] = f"{CACHE_PREFIX}:{name}"
    with override_settings(CACHES=caches, CHANNEL_LAYERS=layers):
        yield


@pytest.fixture(scope="session")
def spool_root(tmp_path_factory) -> Path:
    """Where the tests' turn spools go: never the checkout's var/spool."""
    return tmp_path_factory.mktemp("spools")


@pytest.fixture(scope="session", autouse=True)
def isolated_spool(spool_root) -> Iterator[None]:
    with override_settings(TURN_SPOOL_DIR=spool_root / "tests"):
        yield


@pytest.fixture
def thread_hops(monkeypatch) -> list[str]:
    """The name of each function run in a worker thread through sync_to_async."""
    hops: list[str] = []
    call_in_thread = SyncToAsync.__call__

    async def recording_call(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await call_in_thread(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", recording_call)
    return hops


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(username: str, **extra) -> object:
        return get_user_model().objects.create_user(username, password=PASSWORD, **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice", email="alice@example.com")


@pytest.fixture
def alice_client(alice):
    """A test client logged in as alice."""
    from django.test import Client

    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob(make_user):
    return make_user("bob", email="bob@example.com")


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def devllm(server_logs) -> Iterator[ServerProcess]:
    server = start_devllm(server_logs)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def quirky(server_logs) -> Iterator[ServerProcess]:
    """An upstream that misbehaves as the model picks (see tests/quirky_upstream.py)."""
    server = start_quirky_upstream(server_logs)
    yield server
    server.stop()


def live_database_url() -> str:
    """Return a URL for the test database that pytest-django created."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def endpoints_file(devllm, quirky, tmp_path_factory) -> Path:
    """An endpoints file with the development server, one endpoint nobody listens on, and
    the quirky upstream (its models named "quirks/<quirk>")."""
    path = tmp_path_factory.mktemp("config") / "llm_endpoints.toml"
    quirk_models = "".join(f'\n[[endpoints.models]]\nid = "{quirk}"\n' for quirk in QUIRKS)
    path.write_text(
        f"""
[[endpoints]]
name = "dev"
base_url = "{devllm.url}/v1"

[[endpoints.models]]
id = "dev-chat"
label = "Dev chat"

[[endpoints.models]]
id = "dev-reasoner"
label = "Dev reasoner"

[[endpoints]]
name = "offline"
base_url = "http://127.0.0.1:{free_port()}/v1"

[[endpoints.models]]
id = "ghost"
label = "A model whose server is down"

[[endpoints]]
name = "quirks"
base_url = "{quirky.url}/v1"
{quirk_models}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def site_env(django_db_setup, django_db_blocker, endpoints_file, spool_root) -> dict[str, str]:
    """The environment of a chatsite server process bound to the test database."""
    return {
        "TURN_SPOOL_DIR": str(spool_root / "servers"),
        "DATABASE_URL": live_database_url(),
        "LLM_ENDPOINTS_FILE": str(endpoints_file),
        "LLM_MAX_RETRIES": "0",
        "LLM_READ_TIMEOUT": "3",
        "SSE_KEEPALIVE_SECONDS": "0.5",
        "SECRET_KEY": "test-secret-key-for-the-live-server",
        "DEBUG": "0",
        "SECURE_COOKIES": "0",
        "SERVE_STATIC": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-site",
        # Generous defaults for the shared server; limit tests set a UserLimits override.
        "RATE_LIMIT_PER_MINUTE": "100000",
        "MAX_CONCURRENT_STREAMS": "1000",
        # Stopping a test's server waits for its running answers this long, not 30 s.
        "SHUTDOWN_GRACE_SECONDS": "1",
    }


@pytest.fixture(scope="session")
def site(site_env, server_logs) -> Iterator[ServerProcess]:
    """chatsite under daphne, talking to the development LLM server."""
    server = start_site(server_logs, site_env)
    yield server
    server.stop()


@contextlib.contextmanager
def two_sites_sharing_redis(site_env, server_logs, name: str) -> Iterator[list[ServerProcess]]:
    """Run two chatsite processes on different ports sharing one database and one Redis
    (under a key prefix of their own, `name`)."""
    env = {
        **site_env,
        "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
        "CACHE_KEY_PREFIX": f"{CACHE_PREFIX}-{name}",
    }
    sites = start_sites(server_logs, env, count=2)
    try:
        yield sites
    finally:
        stop_all(sites)


@pytest.fixture(scope="session")
def site_pair(site_env, server_logs) -> Iterator[list[ServerProcess]]:
    """Two chatsite processes on the shared settings, sharing one database and one Redis:
    for every test of what crosses processes (Stop, readers, limits, Responses) that needs
    no setting of its own. Started once per worker, as `site` is."""
    with two_sites_sharing_redis(site_env, server_logs, "pair") as sites:
        yield sites


def log_in_browser(page, username: str, *, path: str = "/accounts/login/") -> None:
    """Log a Playwright page in through the real login form (the site's, or the admin's)."""
    page.goto(path)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def conversation_with_messages(owner, title: str, pairs=(("Hi", "Hello!"),)):
    """A web chat saved as if it had been had: each (question, answer) pair a turn."""
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.create(owner=owner, title=title, model="dev/dev-chat")
    for index, (question, answer) in enumerate(pairs):
        common = {"conversation": conversation, "user": owner, "request_id": f"{title}-{index}"}
        Message.objects.create(role="user", content=question, **common)
        Message.objects.create(role="assistant", is_answer=True, content=answer, **common)
    return conversation


@contextlib.contextmanager
def logged_in_page(browser, base_url: str, username: str, **context_options) -> Iterator["Page"]:
    """A page of a new browser context, logged in as `username` through the login form.

    A script error, a Content-Security-Policy violation or a missing resource (each is a
    console error) fails the test when it leaves the block."""
    context = browser.new_context(base_url=base_url, **context_options)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    log_in_browser(page, username)
    yield page
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser, site, alice) -> Iterator["Page"]:
    """Alice's chat page at desktop size, on the shared site; a module may define its own.
    No script error, CSP violation or missing resource (a favicon 404 included)."""
    with logged_in_page(
        browser, site.url, "alice", viewport={"width": 1280, "height": 800}
    ) as page:
        page.wait_for_url("**/chat/")
        yield page


def log_in(base_url: str, username: str, password: str = PASSWORD) -> httpx.Client:
    """Return an HTTP client logged in through the real login form."""
    client = httpx.Client(base_url=base_url, timeout=30)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, f"login failed for {username}: {response.status_code}"
    client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
    return client


@pytest.fixture
def make_api_key(db) -> Callable[..., str]:
    """Create an API key for a user and return the raw key."""
    from conversations.accounts.apikeys import api_key_create

    def make(user, name: str = "test key") -> str:
        return api_key_create(user=user, name=name)[1]

    return make


@pytest.fixture
def set_limits(db) -> Callable[..., object]:
    """Give a user staff-set limit overrides."""
    from conversations.models import UserLimits

    def set_(user, **limits) -> object:
        return UserLimits.objects.update_or_create(user=user, defaults=limits)[0]

    return set_


def openai_client(site: ServerProcess, api_key: str):
    """The official openai SDK pointed at a chatsite server, as a user would configure it."""
    import openai

    return openai.OpenAI(base_url=f"{site.url}/v1", api_key=api_key, max_retries=0, timeout=30)


def rate_window_left(user) -> float:
    """Seconds left in the user's per-minute window. django-ratelimit counts in fixed windows,
    staggered per key: each user's minute ends at its own second."""
    from django_ratelimit.core import _get_window  # private, but the window is what we test

    # The window includes its last whole second: a new one starts once int(time) passes it.
    return _get_window(str(user.pk), 60) + 1 - time.time()


def fresh_rate_window(user, *, margin: int = 10) -> None:
    """Wait until the user's per-minute window has at least `margin` seconds left: a test that
    straddled a window's end would see its count reset halfway through."""
    left = rate_window_left(user)
    if left < margin:
        time.sleep(left + 0.1)


def user_with_window_left(make_user, name: str, seconds: int, *, candidates: int = 8):
    """A new user whose per-minute window has at least `seconds` left. Of a few users, with
    their windows staggered, one almost surely has; else the wait is for the best one's."""
    user = max((make_user(f"{name}{n}") for n in range(candidates)), key=rate_window_left)
    fresh_rate_window(user, margin=seconds)
    return user


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread for as long as the
    # browser lives; the tests' ORM calls (and pytest-django's flush) are plain blocking
    # calls, which Django refuses next to a running loop unless told it is safe.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                args=CHROMIUM_ARGS,
            )
            yield chromium
            chromium.close()
