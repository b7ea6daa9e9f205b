"""ASGI entry point: daphne (or any ASGI server) serves `chatsite.asgi:application`.

HTTP goes to Django; WebSockets (/ws/chat/) to channels' consumers, behind the session's
user (AuthMiddlewareStack) and a check that the page opening the socket is one of this site's
own, scheme, host and port (conversations.web.socket_security: another site's page cannot use a
visitor's session). Both start the process's own work (ServerLifecycle).

Only server processes import this module (daphne, uvicorn, runserver), never management
commands: what a server needs before its first request is set up here, as it starts.
"""

import logging
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

# Django first, as get_asgi_application() sets it up: the imports below need its settings and
# apps. Its handler reuses each request's thread (chatsite.handlers).
django.setup(set_prefix=False)
from chatsite.handlers import PooledThreadsASGIHandler  # noqa: E402

django_application = PooledThreadsASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.exception import convert_exception_to_response  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.middleware.csp import ContentSecurityPolicyMiddleware  # noqa: E402
from django.middleware.security import SecurityMiddleware  # noqa: E402

from conversations import providers  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402
from conversations.web.socket_security import SameOriginValidator  # noqa: E402

logger = logging.getLogger(__name__)


def create_model_clients() -> None:
    """Set up the model clients before the first request instead of during it (it made the
    first answer after a start wait about a second). A misconfigured endpoint does not stop
    the server: its requests meet the same error, and report it."""
    try:
        names = providers.create_clients()
    except Exception:
        logger.exception("Creating the model clients failed; each is created on first use")
    else:
        logger.info("Model clients ready: %s", ", ".join(names))


create_model_clients()


class ServerLifecycle:
    """Start the process's own work (conversations.turns.lifecycle: spool replay, sweeps of dead
    processes' answers, the SIGTERM drain) with the first request or connection it serves,
    in the server's event loop."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        from conversations.turns import lifecycle

        lifecycle.start()
        return await self.app(scope, receive, send)


class SecureStaticFilesHandler(ASGIStaticFilesHandler):
    """Django's async static handler, with SecurityMiddleware and the Content-Security-Policy
    around each file it serves.

    Django's handler answers /static/ before the application, so no middleware runs for it:
    files would go out without nosniff, Referrer-Policy, Cross-Origin-Opener-Policy, HSTS or
    a CSP (an SVG opened on its own could run its scripts), and over plain HTTP despite
    SECURE_SSL_REDIRECT.
    """

    def __init__(self, application):
        super().__init__(application)
        # Wrapped as Django wraps each middleware: an exception (a missing file, a bad Host
        # header) becomes its error page, which gets the headers too.
        self._secure_serve = convert_exception_to_response(
            ContentSecurityPolicyMiddleware(
                convert_exception_to_response(
                    SecurityMiddleware(convert_exception_to_response(super().serve))
                )
            )
        )

    def serve(self, request: HttpRequest) -> HttpResponse:
        return self._secure_serve(request)


http_application = django_application
if settings.SERVE_STATIC:
    # For development and small installs; behind nginx, let nginx serve STATIC_ROOT instead
    # (see the README).
    http_application = SecureStaticFilesHandler(http_application)

application = ServerLifecycle(
    ProtocolTypeRouter(
        {
            "http": http_application,
            "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
