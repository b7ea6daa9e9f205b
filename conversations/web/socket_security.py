"""Who may hold a chat socket: a page of this very site, and a user still logged in.

* **Origin.** A browser opens a WebSocket to any site with that site's cookies, so a socket
  is accepted only from a page of this one: its Origin (scheme, host *and* port) must be the
  socket's own Host (or one of CSRF_TRUSTED_ORIGINS), and the Host one of ALLOWED_HOSTS.
  channels' AllowedHostsOriginValidator compares the host alone: a page on another port of
  the same host (another application there) could use a visitor's session.
* **Session.** A socket outlives the request that opened it, so the user it was opened for
  is checked again (`session_user_id`): the session must still exist and not be expired,
  its password hash must still match, and the user be active. conversations.web.consumers does
  so on every message, when the user changes (logout, deactivation, a new password), and
  every SESSION_CHECK_SECONDS.
"""

from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import get_user
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


class SameOriginValidator:
    """ASGI middleware refusing (403 at the handshake) a socket from another origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def origin_allowed(scope: dict) -> bool:
    """Whether the socket's Origin is its own site, and its Host an allowed one."""
    headers = {
        name.decode("latin1").lower(): value.decode("latin1") for name, value in scope["headers"]
    }
    host = headers.get("host", "")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    origin = headers.get("origin")
    if not origin:
        return False  # every browser sends one; a client without it has no page to protect
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    own = f"{_scheme(scope, headers)}://{host}"
    return _normalized(origin) == _normalized(own)


def _scheme(scope: dict, headers: dict[str, str]) -> str:
    """The scheme the browser used: https behind a proxy that says so (as Django's
    SECURE_PROXY_SSL_HEADER is trusted for requests), else the socket's own."""
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name, value = proxy_header
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        if headers.get(header, "").split(",")[0].strip() == value:
            return "https"
    return "https" if scope.get("scheme") in ("wss", "https") else "http"


def _normalized(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme, parts.hostname.lower(), port


def session_user_id(session_key: str | None) -> int | None:
    """The id of the active user this session still logs in, or None: the session is gone
    or expired, its password hash no longer matches, or the user cannot log in. Blocking:
    it reads the session store and the user."""
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))
    return user.pk if user.is_authenticated and user.is_active else None
