"""chatsite's middleware (chatsite/middleware.py): an async request runs Django's middleware
hooks on the event loop, and hops to a worker thread only for a hook that may do I/O (saving
the session, storing messages, a CSRF check that reads the session or a multipart body, the
CSRF failure view); the hooks still do what Django's do; and Django's security checks still
see them.

Requests go through Django's AsyncClient, i.e. the async handler and middleware chain that
daphne runs; the sync Client goes through the WSGI path, which is Django's own.
"""

import re
from urllib.parse import urlencode

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from django.http import HttpResponse
from django.test import AsyncClient, Client
from django.utils.deprecation import MiddlewareMixin

from chatsite.middleware import check_security_as_django_middleware
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
DJANGO_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


@pytest.fixture(autouse=True)
def fast_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def hops(monkeypatch) -> list[str]:
    """Record each middleware hook run through sync_to_async (a worker-thread hop), in order,
    as "Class.method"; everything else that hops (views, the ORM) is left out."""
    recorded: list[str] = []
    call_in_thread = SyncToAsync.__call__

    async def recording_call(self, *args, **kwargs):
        middleware = getattr(self.func, "__self__", None)
        if isinstance(middleware, MiddlewareMixin):
            recorded.append(f"{type(middleware).__name__}.{self.func.__name__}")
        return await call_in_thread(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", recording_call)
    return recorded


def send(client: AsyncClient, method: str, path: str, **kwargs) -> HttpResponse:
    """Make one request through the async handler, from this sync test."""
    return async_to_sync(getattr(client, method))(path, **kwargs)


def form(**fields) -> dict:
    """A POST body as a browser sends a form (the test clients default to multipart)."""
    return {
        "data": urlencode(fields, doseq=True),
        "content_type": "application/x-www-form-urlencoded",
    }


def csrf_token(page: HttpResponse) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)[1].decode()


def log_in(client: AsyncClient, username: str, hops: list[str]) -> HttpResponse:
    """Log in through the login form, with its CSRF token; return the POST's response."""
    token = csrf_token(send(client, "get", LOGIN))
    hops.clear()
    return send(
        client,
        "post",
        LOGIN,
        **form(username=username, password=PASSWORD, csrfmiddlewaretoken=token),
    )


# No thread hops where the hooks do no I/O ----------------------------------------------------


def test_an_api_request_runs_no_middleware_hook_in_a_thread(hops, db):
    response = send(
        AsyncClient(),
        "post",
        "/v1/chat/completions",
        data={"model": "dev/dev-chat", "messages": [{"role": "user", "content": "Hi"}]},
        content_type="application/json",
        headers={"Authorization": "Bearer sk-not-a-key"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert hops == []


def test_the_health_check_runs_no_middleware_hook_in_a_thread(hops, db):
    assert send(AsyncClient(), "get", "/health").status_code == 200
    assert hops == []


def test_a_logged_in_page_runs_no_middleware_hook_in_a_thread(hops, alice):
    client = AsyncClient()
    client.force_login(alice)

    response = send(client, "get", "/chat/")

    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content  # the CSRF cookie is renewed
    assert hops == []


def test_djangos_own_middleware_would_hop_for_every_hook(hops, db, settings):
    # The recording above sees hops: the same request through Django's classes takes 15.
    settings.MIDDLEWARE = DJANGO_MIDDLEWARE

    assert send(AsyncClient(), "get", "/health").status_code == 200

    assert "SessionMiddleware.process_request" in hops
    assert "CsrfViewMiddleware.process_view" in hops
    assert len(hops) == 15


# Hops only where a hook may do I/O, and Django's behaviour kept ------------------------------


def test_logging_in_saves_the_session_in_the_only_hop(hops, alice):
    client = AsyncClient(enforce_csrf_checks=True)

    response = log_in(client, "alice", hops)

    assert response.status_code == 302
    assert hops == ["SessionMiddleware.process_response"]
    chat = send(client, "get", "/chat/")
    assert chat.status_code == 200
    assert b"alice" in chat.content


def test_a_post_without_a_csrf_token_is_rejected_in_a_thread(hops, alice):
    client = AsyncClient(enforce_csrf_checks=True)
    send(client, "get", LOGIN)  # the CSRF cookie, but the form's token is not sent back
    hops.clear()

    response = send(client, "post", LOGIN, **form(username="alice", password=PASSWORD))

    assert response.status_code == 403
    assert b"CSRF verification failed" in response.content
    assert hops == ["CsrfViewMiddleware._reject"]
    assert send(client, "get", "/chat/").status_code == 302  # still not logged in


def test_a_json_post_without_a_csrf_token_gets_chatsites_json_failure(hops, alice):
    client = AsyncClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = send(client, "post", "/settings/api-keys/", data={}, content_type="application/json")

    assert response.status_code == 403
    assert "CSRF check failed" in response.json()["error"]["message"]


def test_a_multipart_post_is_checked_in_a_thread(hops, alice):
    # Reading a multipart body runs the upload handlers, which may write files to disk.
    client = AsyncClient(enforce_csrf_checks=True)
    token = csrf_token(send(client, "get", LOGIN))
    hops.clear()

    response = send(
        client,
        "post",
        LOGIN,
        data={"username": "alice", "password": PASSWORD, "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302
    assert hops == ["CsrfViewMiddleware.process_view", "SessionMiddleware.process_response"]


def test_the_sync_path_still_rejects_a_post_without_a_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.get(LOGIN)

    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})

    assert response.status_code == 403
    assert client.get("/chat/").status_code == 302


def test_with_the_csrf_secret_in_the_session_the_csrf_hooks_take_the_thread(hops, alice, settings):
    settings.CSRF_USE_SESSIONS = True
    client = AsyncClient(enforce_csrf_checks=True)

    response = log_in(client, "alice", hops)

    assert response.status_code == 302
    assert hops[:2] == ["CsrfViewMiddleware.process_request", "CsrfViewMiddleware.process_view"]
    assert "SessionMiddleware.process_response" in hops
    assert send(client, "get", "/chat/").status_code == 200


def test_security_headers_are_set(hops, db):
    response = send(AsyncClient(), "get", LOGIN)

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert re.search(r"script-src 'self' 'nonce-[^']+'", policy)
    assert response["Content-Length"] == str(len(response.content))
    assert hops == []


def test_a_url_without_its_slash_is_redirected_to_it(hops, db):
    response = send(AsyncClient(), "get", "/chat")

    assert response.status_code == 301
    assert response["Location"] == "/chat/"
    assert hops == []


def test_a_message_added_in_a_view_is_shown_on_the_next_page(hops, alice, make_user):
    staff = AsyncClient()
    staff.force_login(make_user("root", is_staff=True, is_superuser=True))

    response = send(
        staff,
        "post",
        "/admin/auth/user/",
        **form(action="unlock_login", _selected_action=[alice.pk]),
    )

    assert response.status_code == 302
    assert hops == ["MessageMiddleware.process_response"]
    page = send(staff, "get", response["Location"])
    assert "1 selected account was not locked" in page.content.decode()
    assert "1 selected account was not locked" not in send(staff, "get", "/admin/").content.decode()


# Django's security checks ---------------------------------------------------------------------


def security_check_ids() -> set[str]:
    return {found.id for found in check_security_as_django_middleware(None)}


def test_djangos_security_checks_still_check_the_settings_the_middleware_reads(settings):
    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"
    settings.CSRF_COOKIE_SECURE = False

    found = security_check_ids()

    assert {"security.W004", "security.W008", "security.W019", "security.W016"} <= found
    assert not {"security.W001", "security.W002", "security.W003"} & found


def test_djangos_security_checks_pass_when_those_settings_are_safe(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.X_FRAME_OPTIONS = "DENY"
    settings.CSRF_COOKIE_SECURE = settings.SESSION_COOKIE_SECURE = True

    assert security_check_ids() == set()


def test_a_middleware_really_missing_is_still_reported(settings):
    """Django's own "not in MIDDLEWARE" warnings are silenced (they cannot see the subclasses);
    one that is missing even counting ours as Django's comes back under chatsite's ID."""
    settings.MIDDLEWARE = [
        path for path in settings.MIDDLEWARE if not path.endswith(".XFrameOptionsMiddleware")
    ]

    assert "chatsite.security.W002" in security_check_ids()
