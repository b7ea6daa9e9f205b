"""ASGI entry point: daphne (or any ASGI server) serves `chatsite.asgi:application`."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

django_application = get_asgi_application()


class ServerLifecycle:
    """Start the process's own work (conversations.lifecycle: spool replay, sweeps of dead
    processes' answers, the SIGTERM drain) with the first request or connection it serves,
    in the server's event loop."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        from conversations import lifecycle

        lifecycle.start()
        return await self.app(scope, receive, send)


application = ServerLifecycle(django_application)


class SecureStaticFilesHandler(ASGIStaticFilesHandler):
    """Django's async static handler, with SecurityMiddleware around each file it serves.

    Django's handler answers /static/ before the application, so no middleware runs for it:
    files would go out without nosniff, Referrer-Policy, Cross-Origin-Opener-Policy or HSTS,
    and over plain HTTP despite SECURE_SSL_REDIRECT.
    """

    def __init__(self, application):
        super().__init__(application)
        # Wrapped as Django wraps each middleware: an exception (a missing file, a bad Host
        # header) becomes its error page, which gets the headers too.
        self._secure_serve = convert_exception_to_response(
            SecurityMiddleware(convert_exception_to_response(super().serve))
        )

    def serve(self, request: HttpRequest) -> HttpResponse:
        return self._secure_serve(request)


if settings.SERVE_STATIC:
    # For development and small installs; behind nginx, let nginx serve STATIC_ROOT instead
    # (see the README).
    application = SecureStaticFilesHandler(application)
