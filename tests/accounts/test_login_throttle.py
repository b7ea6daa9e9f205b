"""Logging in: failed passwords are throttled per account and per address, on the site's login
and the admin's; staff can unlock an account; every login gets a new session ID; and there are
no password-reset pages, since chatsite sends no e-mail."""

import threading
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client

from conversations.accounts.logins import client_address, unlock_account, unlock_address
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
ACCOUNT_LOCKED = "Too many failed attempts for this account. Try again in 15 minutes."
ADDRESS_LOCKED = "Too many failed attempts from your network. Try again in 15 minutes."
SPRAYER, NEIGHBOUR = "203.0.113.7", "198.51.100.9"
SPRAYED = [f"nobody-{i}" for i in range(30)]


@pytest.fixture(autouse=True)
def fast_hashing_and_clean_counters(settings):
    """Hash with MD5 (the limits are about counting, not hashing), and clear the counters of
    the names and addresses used here: the cache may be a Redis shared by the whole run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def clear() -> None:
        for name in ["alice", "bob", "root", "ghost", *SPRAYED]:
            unlock_account(name)
        for address in ["127.0.0.1", SPRAYER, NEIGHBOUR]:
            unlock_address(address)

    clear()
    yield
    clear()


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """Record every password hashed or checked, in order."""
    calls: list[str] = []
    encode = MD5PasswordHasher.encode

    def counting_encode(self, password, salt):  # checking a password encodes it too
        calls.append(password)
        return encode(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", counting_encode)
    return calls


@pytest.fixture
def root(make_user):
    return make_user("root", is_staff=True, is_superuser=True)


def attempt(client: Client, username: str, password: str, *, path: str = LOGIN, **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def fail(client: Client, username: str, times: int, *, path: str = LOGIN, **extra) -> None:
    for _ in range(times):
        response = attempt(client, username, "not-the-password", path=path, **extra)
        assert response.status_code == 200
        assert "correct username and password" in response.content.decode()


def is_logged_in(client: Client, user) -> bool:
    return client.session.get("_auth_user_id") == str(user.pk)


# The per-account limit ------------------------------------------------------------------


def test_after_five_wrong_passwords_the_right_one_is_refused_with_a_readable_message(alice):
    client = Client()
    fail(client, "alice", 5)

    response = attempt(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    page = response.content.decode()
    assert f'<div class="form-errors" role="alert">\n        <p>{ACCOUNT_LOCKED}</p>' in page
    assert 'value="alice"' in page  # the form keeps the name, ready for the next try
    assert not is_logged_in(client, alice)


def test_four_wrong_passwords_still_let_the_right_one_in(alice):
    client = Client()
    fail(client, "alice", 4)
    assert attempt(client, "alice", PASSWORD).status_code == 302
    assert is_logged_in(client, alice)


def test_successful_logins_are_not_counted(alice):
    for _ in range(10):
        assert attempt(Client(), "alice", PASSWORD).status_code == 302
    fail(Client(), "alice", 4)
    assert attempt(Client(), "alice", PASSWORD).status_code == 302


def test_a_refused_attempt_hashes_no_password(alice, hashes):
    client = Client()
    fail(client, "alice", 1)
    assert hashes == ["not-the-password"]  # a wrong password is checked
    fail(client, "alice", 4)
    hashes.clear()

    assert attempt(client, "alice", PASSWORD).status_code == 429
    assert attempt(client, "alice", "another-guess").status_code == 429

    assert hashes == []


@pytest.mark.django_db(transaction=True)
def test_a_parallel_burst_of_guesses_hashes_no_more_than_the_limit(alice, hashes, monkeypatch):
    encode = MD5PasswordHasher.encode

    def slow_encode(self, password, salt):  # every guess is still being checked...
        time.sleep(0.2)
        return encode(self, password, salt)

    monkeypatch.setattr(MD5PasswordHasher, "encode", slow_encode)
    statuses = []

    def guess() -> None:
        try:
            statuses.append(attempt(Client(), "alice", "not-the-password").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(hashes) == 5  # ...while the others come in, and are refused unchecked
    assert sorted(statuses) == [200] * 5 + [429] * 15


def test_the_lock_follows_the_account_from_every_client_and_spares_other_accounts(alice, bob):
    fail(Client(), "alice", 5)

    elsewhere = Client(REMOTE_ADDR=NEIGHBOUR)
    assert ACCOUNT_LOCKED in attempt(elsewhere, "alice", PASSWORD).content.decode()
    assert attempt(Client(), "bob", PASSWORD).status_code == 302


def test_the_lock_is_keyed_by_the_name_exactly_as_typed(make_user):
    """Django looks accounts up by their exact name: "Victim2" is another account than
    "victim2", and guessing at one must not lock the other out."""
    lower, upper = make_user("victim2"), make_user("Victim2")
    fail(Client(), "victim2", 5)

    assert attempt(Client(), "victim2", PASSWORD).status_code == 429
    other = Client()
    assert attempt(other, "Victim2", PASSWORD).status_code == 302
    assert is_logged_in(other, upper) and not is_logged_in(other, lower)


def test_the_wait_is_written_in_whole_minutes(alice, settings):
    settings.LOGIN_LOCKOUT_MINUTES = 1
    fail(Client(), "alice", 5)
    response = attempt(Client(), "alice", PASSWORD)
    assert "Try again in 1 minute." in response.content.decode()
    assert 0 < int(response["Retry-After"]) <= 60


def test_the_limits_are_settings(alice, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    fail(Client(), "alice", 2)
    assert attempt(Client(), "alice", PASSWORD).status_code == 429


def test_unknown_names_are_throttled_like_real_ones(db):
    fail(Client(), "ghost", 5)
    assert "this account" in attempt(Client(), "ghost", "guess").content.decode()


# The per-address limit ------------------------------------------------------------------


def test_one_address_spraying_many_accounts_is_refused_and_others_are_not(alice):
    sprayer = Client(REMOTE_ADDR=SPRAYER)
    for name in SPRAYED:
        fail(sprayer, name, 1)

    response = attempt(sprayer, "alice", PASSWORD)

    assert response.status_code == 429
    assert ADDRESS_LOCKED in response.content.decode()
    assert attempt(Client(REMOTE_ADDR=NEIGHBOUR), "alice", PASSWORD).status_code == 302


def test_behind_a_proxy_the_address_comes_from_the_configured_header(alice, settings):
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 3
    proxy = Client(REMOTE_ADDR="127.0.0.1")
    for name in SPRAYED[:3]:
        fail(proxy, name, 1, headers={"X-Real-IP": SPRAYER})

    assert attempt(proxy, "alice", PASSWORD, headers={"X-Real-IP": SPRAYER}).status_code == 429
    assert attempt(proxy, "alice", PASSWORD, headers={"X-Real-IP": NEIGHBOUR}).status_code == 302


def test_client_address_trusts_only_the_proxys_entry_and_groups_ipv6_by_64(rf, settings):
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    forged = rf.get("/", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.7"})
    assert client_address(forged) == "203.0.113.7"
    assert client_address(rf.get("/", REMOTE_ADDR="198.51.100.9")) == "198.51.100.9"

    settings.CLIENT_IP_HEADER = ""
    assert client_address(rf.get("/", REMOTE_ADDR="2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_address(rf.get("/", REMOTE_ADDR="::ffff:192.0.2.1")) == "192.0.2.1"
    assert client_address(forged) == "127.0.0.1"


# Staff unlock and the admin's login -------------------------------------------------------


def test_staff_unlock_lets_the_account_log_in_again(alice, root):
    fail(Client(), "alice", 5)
    staff = Client()
    staff.force_login(root)

    response = staff.post(
        "/admin/auth/user/",
        {"action": "unlock_login", "_selected_action": [alice.pk]},
        follow=True,
    )

    assert "Unlocked: alice." in response.content.decode()
    assert attempt(Client(), "alice", PASSWORD).status_code == 302


def test_unlocking_an_account_that_was_not_locked_says_so(alice, bob, root):
    staff = Client()
    staff.force_login(root)
    response = staff.post(
        "/admin/auth/user/",
        {"action": "unlock_login", "_selected_action": [alice.pk, bob.pk]},
        follow=True,
    )
    assert "2 selected accounts were not locked" in response.content.decode()


def test_the_admin_login_is_throttled_too_and_shares_the_count(root):
    client = Client()
    fail(client, "root", 3, path=ADMIN_LOGIN)
    fail(client, "root", 2)  # the site's login counts toward the same account

    response = attempt(client, "root", PASSWORD, path=ADMIN_LOGIN)

    assert response.status_code == 429
    assert f'<p class="errornote">\n    {ACCOUNT_LOCKED}\n</p>' in response.content.decode()
    assert not is_logged_in(client, root)


def test_the_admin_login_still_works(root):
    client = Client()
    response = attempt(client, "root", PASSWORD, path=f"{ADMIN_LOGIN}?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/admin/"


# Sessions ---------------------------------------------------------------------------------


def test_each_login_through_the_form_issues_a_new_session_id(alice):
    client = Client()
    # A session planted before the login (session fixation) must not survive it.
    planted = SessionStore()
    planted["planted"] = True
    planted.create()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = planted.session_key

    assert attempt(client, "alice", PASSWORD).status_code == 302
    first = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    assert attempt(client, "alice", PASSWORD).status_code == 302
    second = client.cookies[django_settings.SESSION_COOKIE_NAME].value

    assert len({planted.session_key, first, second}) == 3
    assert not SessionStore().exists(planted.session_key)
    assert not SessionStore().exists(first)
    assert is_logged_in(client, alice)


def test_each_login_through_the_admin_form_issues_a_new_session_id(root):
    client = Client()
    keys = []
    for _ in range(2):
        assert attempt(client, "root", PASSWORD, path=ADMIN_LOGIN).status_code == 302
        keys.append(client.cookies[django_settings.SESSION_COOKIE_NAME].value)
    assert keys[0] != keys[1]
    assert is_logged_in(client, root)


# No password reset ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/MQ/set-password/",
        "/accounts/reset/MQ/abc-123/",
        "/accounts/reset/done/",
    ],
)
def test_password_reset_pages_are_not_found(path):
    assert Client().get(path).status_code == 404


def test_the_login_pages_do_not_offer_a_password_reset():
    for path in (LOGIN, ADMIN_LOGIN):
        page = Client().get(path).content.decode().lower()
        assert "reset" not in page and "forgot" not in page, path
