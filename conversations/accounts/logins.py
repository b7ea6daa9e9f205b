"""Logging in: failed passwords throttled before any is hashed, and a new session every time.

Failed logins are throttled by two rules, counted in the default cache (Redis when REDIS_URL
is set, so that every server process sees the same counts):

1. **Per account.** LOGIN_FAILURE_LIMIT wrong passwords (default 5) for one username within
   LOGIN_FAILURE_WINDOW seconds (default 60) lock that username for LOGIN_LOCKOUT_MINUTES
   (default 15). While it is locked every attempt is refused, even with the right password;
   other accounts are unaffected.
2. **Per client address.** LOGIN_ADDRESS_FAILURE_LIMIT failures (default 30) from one address
   within the same window lock that address out, so that one client cannot spray guesses
   over many accounts. IPv6 addresses count per /64, which one client usually holds whole.

Only failures count. Each attempt is counted *before* its password is checked and given back
when the password was right, so a burst of parallel guesses cannot slip past the limit while
the first ones are still being hashed. A refused attempt hashes nothing, so a flood of them
costs little CPU. Windows are fixed: they start at the first counted attempt.

The site's login form and the admin's share the rules (both forms are below); a refused login
is answered 429 with Retry-After, and the page says how long to wait. Staff unlock an account
from the user list in the admin (conversations.admin.accounts).

Every login issues a new session ID. Django's login() already cycles the key of an anonymous
session and flushes another user's, but keeps the key when the same user logs in again over a
live session; login_view() closes that gap for both login pages.
"""

import contextlib
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.debug import sensitive_variables

logger = logging.getLogger(__name__)

ACCOUNT_LOCKED = "Too many failed attempts for this account. Try again in {wait}."
ADDRESS_LOCKED = "Too many failed attempts from your network. Try again in {wait}."


@dataclass(frozen=True, slots=True)
class Counter:
    """Failures of one account or one address, and the lock they lead to."""

    key: str
    limit: int
    message: str

    @property
    def lock_key(self) -> str:
        return f"{self.key}:locked-until"


class LoginLocked(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def account_counter(username: str) -> Counter:
    # Hashed: the name is whatever the client typed, and it need not appear in the cache.
    # Exactly as typed, as the login looks the account up: "Victim2" is another account
    # than "victim2", and wrong passwords for one must not lock the other out.
    digest = hashlib.sha256(username.encode()).hexdigest()[:32]
    return Counter(f"login-failures:account:{digest}", settings.LOGIN_FAILURE_LIMIT, ACCOUNT_LOCKED)


def address_counter(address: str) -> Counter:
    return Counter(
        f"login-failures:address:{address}", settings.LOGIN_ADDRESS_FAILURE_LIMIT, ADDRESS_LOCKED
    )


def client_address(request: HttpRequest) -> str:
    """Return the client's address, as the proxy named in CLIENT_IP_HEADER saw it if set.

    The header's rightmost entry is the one our own proxy wrote (an X-Forwarded-For built
    with nginx's $proxy_add_x_forwarded_for ends with it); entries left of it came from the
    client and prove nothing. IPv6 addresses are reduced to their /64.
    """
    raw = request.META.get("REMOTE_ADDR", "")
    if settings.CLIENT_IP_HEADER:
        forwarded = request.headers.get(settings.CLIENT_IP_HEADER, "")
        if forwarded.strip():
            raw = forwarded.rsplit(",", 1)[-1].strip()
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"  # e.g. a server listening on a Unix socket
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute" + ("" if minutes == 1 else "s")


def _lockout_seconds() -> int:
    return settings.LOGIN_LOCKOUT_MINUTES * 60


def _locked(counter: Counter, seconds: int) -> LoginLocked:
    return LoginLocked(counter.message.format(wait=_minutes(seconds)), seconds)


def _lock(counter: Counter) -> None:
    seconds = _lockout_seconds()
    cache.set(counter.lock_key, time.time() + seconds, timeout=seconds)
    # The count must outlive no lock (counting starts afresh after one), yet not vanish under
    # it: attempts in flight that passed the lock check still count up and are refused.
    cache.touch(counter.key, seconds - 1)


def _count(counter: Counter) -> int:
    window = settings.LOGIN_FAILURE_WINDOW
    cache.add(counter.key, 0, timeout=window)
    try:
        return cache.incr(counter.key)
    except ValueError:  # the window ended between add and incr
        cache.set(counter.key, 1, timeout=window)
        return 1


def _give_back(counter: Counter) -> None:
    # ValueError: the window ended (or a lock cleared it), so there is nothing to give back.
    with contextlib.suppress(ValueError):
        cache.decr(counter.key)


class LoginAttempt:
    """One password check, counted against both rules until it proves right."""

    def __init__(self, counters: tuple[Counter, ...], counts: list[int]) -> None:
        self._counters = counters
        self._counts = counts

    @classmethod
    def begin(cls, request: HttpRequest, username: str) -> "LoginAttempt":
        """Count the attempt, or raise LoginLocked, before any password is hashed."""
        counters = (account_counter(username), address_counter(client_address(request)))
        now = time.time()
        until = cache.get_many([counter.lock_key for counter in counters])
        for counter in counters:
            left = math.ceil(until.get(counter.lock_key, 0) - now)
            if left > 0:
                raise _locked(counter, left)
        counts = [_count(counter) for counter in counters]
        over = [c for c, count in zip(counters, counts, strict=True) if count > c.limit]
        if over:
            # Parallel attempts still in flight have used the allowance already: that is a
            # burst of guesses, not someone mistyping. This one is refused, so it is no failure
            # where no limit was passed.
            for counter in counters:
                if counter in over:
                    _lock(counter)
                else:
                    _give_back(counter)
            raise _locked(over[0], _lockout_seconds())
        return cls(counters, counts)

    def settle(self, *, password_ok: bool) -> None:
        """Give the attempt back if the password was right; lock once failures reach a limit."""
        for counter, count in zip(self._counters, self._counts, strict=True):
            if password_ok:
                _give_back(counter)
            elif count >= counter.limit:
                _lock(counter)


def unlock_account(username: str) -> bool:
    """Clear an account's lock and failures; return whether it was locked."""
    counter = account_counter(username)
    was_locked = cache.get(counter.lock_key) is not None
    cache.delete_many([counter.key, counter.lock_key])
    return was_locked


def unlock_address(address: str) -> bool:
    """Clear a client address's lock and failures (as client_address writes it)."""
    counter = address_counter(address)
    was_locked = cache.get(counter.lock_key) is not None
    cache.delete_many([counter.key, counter.lock_key])
    return was_locked


# How long a login refused because the counts cannot be kept (Redis away) is asked to wait.
UNAVAILABLE_RETRY_AFTER = 5
UNAVAILABLE = (
    "Logging in is unavailable for a moment (the server cannot keep count of attempts). "
    f"Try again in {UNAVAILABLE_RETRY_AFTER} seconds."
)


class ThrottledLoginMixin:
    """Check the throttle in the form's clean(), where Django's login forms authenticate.

    Without the counts (the cache, Redis, unreachable) no password is checked: the throttle
    must not fail open, or taking the cache away would make guessing free. The login is
    refused with a 503 to retry, the page saying why."""

    throttled_for: int | None = None  # seconds to wait, when this form was refused
    unavailable = False  # refused because the counts could not be kept

    @sensitive_variables("password")
    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return super().clean()  # nothing is authenticated: nothing to count
        try:
            attempt = LoginAttempt.begin(self.request, username)
        except LoginLocked as locked:
            self.throttled_for = locked.retry_after
            raise ValidationError(locked.message, code="throttled") from None
        except Exception:
            logger.warning("Login refused: the attempt could not be counted", exc_info=True)
            self.throttled_for, self.unavailable = UNAVAILABLE_RETRY_AFTER, True
            raise ValidationError(UNAVAILABLE, code="unavailable") from None
        try:
            return super().clean()
        finally:
            # user_cache is set once the password proved right, even if the account may not
            # log in here (inactive, or not staff on the admin): that is no failed guess.
            try:
                attempt.settle(password_ok=self.user_cache is not None)
            except Exception:  # the cache went away meanwhile: the count stays as it was
                logger.warning("A login attempt could not be settled", exc_info=True)


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


def login_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view (the site's or the admin's).

    A login posted over a session that is already logged in gets a new session key first:
    login() then keeps it, where it would have kept the old one. A refused login is a 429 with
    Retry-After (the page still says why), which proxies' logs and tools such as fail2ban see.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST" and SESSION_KEY in request.session:
            request.session.cycle_key()
        response = view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        retry_after = getattr(form, "throttled_for", None)
        if retry_after:
            response.status_code = 503 if getattr(form, "unavailable", False) else 429
            response["Retry-After"] = str(retry_after)
        return response

    return wrapper
