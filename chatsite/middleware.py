"""Django's middleware, with their hooks run on the event loop wherever they do no I/O.

For an async request, Django's MiddlewareMixin runs every process_request and
process_response through sync_to_async(thread_sensitive=True), and the handler does the same
to every sync process_view: with chatsite's eight middleware that is 15 hops per request to
the one shared sync thread and back, each a thread switch, a future and an event-loop wake-up,
with all requests queueing for that single thread. Yet nearly all of these hooks only read
headers and set attributes. (Measured under daphne, GET /health: 2.9 ms of server CPU per
request with Django's classes, 1.6 ms with these.) The classes here keep Django's hooks as
they are and change only where they run: inline on the event loop, or in the thread when a
hook may do I/O (the session store, a multipart upload, the CSRF failure view). The sync path
(WSGI, the test Client) is Django's own.
"""

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core import checks
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csp, csrf, security
from django.test.utils import override_settings
from django.utils.module_loading import import_string


async def run_hook(hook: Callable[..., Any], *args: Any, in_thread: bool) -> Any:
    """Call a sync middleware hook on the event loop, or in Django's sync thread."""
    if in_thread:
        return await sync_to_async(hook, thread_sensitive=True)(*args)
    return hook(*args)


class InlineMiddlewareMixin:
    """Run a MiddlewareMixin's hooks on the event loop unless the class's predicates say
    that this call may do blocking I/O. Put it before the Django middleware in the bases."""

    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]

    def process_request_needs_thread(self, request: HttpRequest) -> bool:
        """Return whether process_request may do blocking I/O for this request."""
        return False

    def process_response_needs_thread(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> bool:
        """Return whether process_response may do blocking I/O for this response."""
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        """MiddlewareMixin.__acall__, with a hop to the thread only where a hook needs one."""
        response = None
        if hasattr(self, "process_request"):
            in_thread = self.process_request_needs_thread(request)
            response = await run_hook(self.process_request, request, in_thread=in_thread)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            in_thread = self.process_response_needs_thread(request, response)
            response = await run_hook(self.process_response, request, response, in_thread=in_thread)
        return response


class SecurityMiddleware(InlineMiddlewareMixin, security.SecurityMiddleware):
    """Headers and the HTTPS redirect: no I/O."""


class ContentSecurityPolicyMiddleware(InlineMiddlewareMixin, csp.ContentSecurityPolicyMiddleware):
    """A lazy nonce and the policy header: no I/O."""


class CommonMiddleware(InlineMiddlewareMixin, common.CommonMiddleware):
    """User-agent and URL checks against the URLconf, and Content-Length: no I/O."""


class XFrameOptionsMiddleware(InlineMiddlewareMixin, clickjacking.XFrameOptionsMiddleware):
    """One header: no I/O."""


class AuthenticationMiddleware(InlineMiddlewareMixin, auth.AuthenticationMiddleware):
    """process_request only sets the lazy request.user and request.auser: the user is loaded
    (from the database) when a view asks, not here."""


class SessionMiddleware(InlineMiddlewareMixin, sessions.SessionMiddleware):
    """process_request builds a lazy session store; process_response saves it (database I/O)
    only when it was modified or SESSION_SAVE_EVERY_REQUEST is on, and never an empty one."""

    def process_response_needs_thread(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> bool:
        # The same conditions as Django's process_response, reading the same in-memory flags
        # (is_empty() loads nothing). Deleting the cookie of an emptied session and patching
        # Vary are header work; the expiry read and the save before set_cookie are not.
        try:
            modified = request.session.modified
            empty = request.session.is_empty()
        except AttributeError:
            return False
        return (modified or settings.SESSION_SAVE_EVERY_REQUEST) and not empty


class MessageMiddleware(InlineMiddlewareMixin, messages.MessageMiddleware):
    """process_request builds a lazy storage; process_response stores messages, which with the
    session (or fallback) storage writes the session, only if messages were read or added."""

    def process_response_needs_thread(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> bool:
        # BaseStorage.update() stores nothing unless `used` or `added_new`. A storage that does
        # not have these flags is not one we know: give it the thread.
        storage = getattr(request, "_messages", None)
        if storage is None:
            return False
        return getattr(storage, "used", True) or getattr(storage, "added_new", True)


# Set while CsrfViewMiddleware.process_view runs on the event loop: a rejection then raises
# _DeferredRejection instead of calling the failure view there.
_rejection_deferred: ContextVar[bool] = ContextVar("csrf_rejection_deferred", default=False)


class _DeferredRejection(Exception):
    """A CSRF rejection to be answered by the failure view in Django's sync thread."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CsrfViewMiddleware(InlineMiddlewareMixin, csrf.CsrfViewMiddleware):
    """The CSRF secret lives in a cookie unless CSRF_USE_SESSIONS: then reading and writing it
    touches the session, which may load it from the database, and every hook takes the thread.

    process_view becomes a coroutine function in async mode, because the handler wraps a sync
    one in sync_to_async (BaseHandler.load_middleware, adapt_method_mode). A rejection is
    still answered in the thread: the failure view is a view, which reads its template from
    disk and may look at request.user."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            # Only in async mode: under WSGI the handler would run a coroutine function
            # through async_to_sync, so the sync path keeps Django's process_view.
            self.process_view = self.aprocess_view

    def process_request_needs_thread(self, request: HttpRequest) -> bool:
        return settings.CSRF_USE_SESSIONS

    def process_response_needs_thread(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> bool:
        # Django's process_response writes the secret only when the flag is set.
        return settings.CSRF_USE_SESSIONS and bool(request.META.get("CSRF_COOKIE_NEEDS_UPDATE"))

    def process_view_needs_thread(self, request: HttpRequest) -> bool:
        """Return whether the CSRF check of this request may do blocking I/O."""
        # The token check reads request.POST; for a multipart body that runs the upload
        # handlers, which may write files to disk.
        multipart_post = request.method == "POST" and request.content_type == "multipart/form-data"
        return settings.CSRF_USE_SESSIONS or multipart_post

    async def aprocess_view(
        self,
        request: HttpRequest,
        callback: Callable[..., Any],
        callback_args: tuple[Any, ...],
        callback_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        """Django's process_view, on the event loop unless it may do I/O."""
        args = (request, callback, callback_args, callback_kwargs)
        if self.process_view_needs_thread(request):
            return await run_hook(super().process_view, *args, in_thread=True)
        deferring = _rejection_deferred.set(True)
        try:
            return super().process_view(*args)
        except _DeferredRejection as rejection:
            reason = rejection.reason
        finally:
            _rejection_deferred.reset(deferring)
        return await run_hook(super()._reject, request, reason, in_thread=True)

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseBase:
        if _rejection_deferred.get():
            raise _DeferredRejection(reason)
        return super()._reject(request, reason)


@checks.register(checks.Tags.security, deploy=True)
def check_security_as_django_middleware(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Run Django's security checks as if MIDDLEWARE named Django's own classes; return
    what they find that the run with chatsite's classes cannot.

    Those checks look for Django's middleware by dotted path: with the subclasses above they
    report the middleware missing (security.W001-W003, silenced in settings) and skip every
    check of the settings it reads (HSTS, the HTTPS redirect, X_FRAME_OPTIONS, the CSRF
    cookie). Django runs it once this module is imported at start-up (an AppConfig.ready).
    """
    security_checks = [
        check
        for check in checks.registry.registry.get_checks(include_deployment_checks=True)
        if check.__module__.startswith("django.core.checks.security.")
    ]

    def run() -> list[checks.CheckMessage]:
        return [found for check in security_checks for found in check(app_configs, **kwargs)]

    as_chatsite = run()
    with override_settings(MIDDLEWARE=[_as_django_path(path) for path in settings.MIDDLEWARE]):
        as_django = run()
    found = [message for message in as_django if message not in as_chatsite]
    # A middleware missing even when ours count as Django's: the silenced warning, reissued.
    found += [
        checks.Warning(message.msg, hint=message.hint, id=f"chatsite.{message.id}")
        for message in as_django
        if message.id in MISSING_MIDDLEWARE
    ]
    return found


# Django's "this middleware is not in MIDDLEWARE" warnings, silenced in settings because they
# cannot see chatsite's subclasses.
MISSING_MIDDLEWARE = ("security.W001", "security.W002", "security.W003")


def _as_django_path(path: str) -> str:
    """Name one of the classes above by the Django middleware it runs; others as they are."""
    middleware = import_string(path)
    if not issubclass(middleware, InlineMiddlewareMixin):
        return path
    django_middleware = next(c for c in middleware.__mro__ if c.__module__.startswith("django."))
    return f"{django_middleware.__module__}.{django_middleware.__qualname__}"
