"""Who may do what: every URL of the site, its APIs and the admin, for every kind of caller.

ACCESS is the one table of it. Each row is a request; each column what one role gets: the
status, and for a row that observes something, what the request left behind (the key
"revoked" or "kept", an export with message "text" or "none" at all, a transcript with the
"text" or only the "note" that it is withheld, ...). The columns, in the order of ROLES:

    anon    anonymous
    owner   a plain user, who owns every object the URLs name
    other   another plain user
    staff   staff without permissions
    viewer  staff with the view permission on conversations, messages, API keys, user
            limits and users
    convs   staff with "view conversation" only: metadata, never message text
    super   a superuser

Pages and the admin use the session; /v1 (and one site API row) an API key per user. CSRF is
enforced and every client sends a valid token, so a refusal is never a CSRF refusal. Requests
that would call a model send a body refused after authorization (a 400 for the authorized
caller, a 404 for a conversation that is not theirs), so no model server is needed.
"""

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import Resolver404, URLResolver, get_resolver, resolve
from django.utils.crypto import get_random_string

from conversations import providers
from conversations.accounts.apikeys import api_key_create
from conversations.models import ApiKey, Conversation, Message, TurnAudit, UserLimits

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "owner", "another user", "staff", "viewer", "conversations-only", "super")
ANON, OWNER, OTHER, STAFF, VIEWER, CONVS, SUPER = ROLES

QUESTION = "Where do aardvarks sleep in winter?"
ANSWER = "Aardvarks sleep in burrows they dig themselves."
TITLE = "Trip planning"
REQUEST_ID = "req-matrix-0001"
WITHHELD_NOTE = "Reading messages needs the &ldquo;view message&rdquo; permission."
CSRF_SECRET = get_random_string(32)


# What a response did ---------------------------------------------------------------------
# Each returns a word for the effect, read from the response or the database afterwards.


def key_state(response: HttpResponse, world: SimpleNamespace) -> str:
    return "revoked" if ApiKey.objects.get(pk=world.ids["key"]).revoked_at else "kept"


def title_state(response: HttpResponse, world: SimpleNamespace) -> str:
    found = Conversation.objects.filter(pk=world.ids["conversation"]).first()
    return "renamed" if found is not None and found.title != TITLE else "kept"


def conversation_state(response: HttpResponse, world: SimpleNamespace) -> str:
    return "kept" if Conversation.objects.filter(pk=world.ids["conversation"]).exists() else "gone"


def limits_state(response: HttpResponse, world: SimpleNamespace) -> str:
    rpm = UserLimits.objects.get(pk=world.ids["limits"]).requests_per_minute
    return "kept" if rpm == 5 else "changed"


def superuser_state(response: HttpResponse, world: SimpleNamespace) -> str:
    promoted = get_user_model().objects.get(pk=world.ids["owner"]).is_superuser
    return "promoted" if promoted else "kept"


def audited(action: str) -> Callable[[HttpResponse, SimpleNamespace], str]:
    """Whether the request left a TurnAudit row of `action` for the owner's answer (the
    world's own record is a "view" by the superuser, made before any request)."""

    def state(response: HttpResponse, world: SimpleNamespace) -> str:
        rows = TurnAudit.objects.filter(action=action, message_id=world.ids["message"])
        return "recorded" if rows.exclude(pk=world.ids["audit"]).exists() else "none"

    return state


def body_of(response: HttpResponse) -> str:
    if not response.streaming:
        return response.content.decode()

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)().decode()


def message_text(response: HttpResponse, world: SimpleNamespace) -> str:
    """A page or an export: "text" when it shows the messages' words, "note" when it says
    they are withheld, "no text" otherwise."""
    if response.status_code != 200:
        return ""
    body = body_of(response)
    if QUESTION in body or ANSWER in body:
        return "text"
    return "note" if WITHHELD_NOTE in body else "no text"


def export(response: HttpResponse, world: SimpleNamespace) -> str:
    if not response.get("Content-Disposition", "").startswith("attachment"):
        return "none"
    return "text" if message_text(response, world) == "text" else "no text"


def search_hits(response: HttpResponse, world: SimpleNamespace) -> str:
    if response.status_code != 200:
        return ""
    return "found" if response.context["cl"].result_count else "none"


def listed(response: HttpResponse, world: SimpleNamespace) -> str:
    """The site API's list, or the API keys page: does it show the owner's object?"""
    if response.status_code != 200:
        return ""
    if response["Content-Type"].startswith("application/json"):
        ids = [c["id"] for c in response.json()["data"]]
        return "listed" if world.ids["conversation"] in ids else "hidden"
    return "listed" if world.key_prefix in response.content.decode() else "hidden"


# The table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One request; `expect` gives what each role gets, in the order of ROLES."""

    method: str
    path: str  # {conversation}, {key}, ... are filled from the world's IDs
    note: str = ""
    body: dict | None = None  # JSON for the chat stream and the APIs, form data elsewhere
    key: bool = False  # authenticate by API key rather than by session
    observe: Callable[[HttpResponse, SimpleNamespace], str] | None = None
    expected: tuple = field(default=(), compare=False)

    def expect(self, *cells: int | str) -> "Row":
        """Take the status each role gets, in the order of ROLES, then, for a row that
        observes something, what each role's request left ("" for nothing to see)."""
        statuses, effects = cells[: len(ROLES)], cells[len(ROLES) :] or ("",) * len(ROLES)
        assert len(statuses) == len(effects) == len(ROLES), self.label
        assert (self.observe is None) == (effects == ("",) * len(ROLES)), self.label
        outcomes = tuple(f"{s} {e}".strip() for s, e in zip(statuses, effects, strict=True))
        return replace(self, expected=outcomes)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}" + (f" ({self.note})" if self.note else "")


CHANGELIST = "/admin/conversations/conversation/"
TRANSCRIPT = CHANGELIST + "{conversation}/change/"


def action(name: str, selected: str) -> dict:
    return {"action": name, "_selected_action": [selected], "index": "0"}


# fmt: off
ACCESS = (
    # The site's pages ---------------------------------------------------------------------
    #   anon       owner      other      staff      viewer     convs      super
    # The health check is for load balancers: anyone may ask, and it reveals nothing.
    Row("GET", "/health").expect(
        200,       200,       200,       200,       200,       200,       200),
    Row("GET", "/").expect(
        302,       302,       302,       302,       302,       302,       302),
    Row("GET", "/chat/").expect(
        302,       200,       200,       200,       200,       200,       200),
    Row("GET", "/chat/{conversation}/").expect(
        302,       200,       404,       404,       404,       404,       404),
    Row("POST", "/chat/stream/", "an empty body", body={}).expect(
        401,       400,       400,       400,       400,       400,       400),
    Row("POST", "/chat/stream/", "regenerate in an empty conversation",
        body={"action": "regenerate", "conversation": "{empty}"}).expect(
        401,       400,       404,       404,       404,       404,       404),
    Row("GET", "/settings/api-keys/", observe=listed).expect(
        302,       200,       200,       200,       200,       200,       200,
        "",        "listed",  "hidden",  "hidden",  "hidden",  "hidden",  "hidden"),
    Row("POST", "/settings/api-keys/", "create one's own key", body={"name": "new"}).expect(
        302,       302,       302,       302,       302,       302,       302),  # then GET
    Row("POST", "/settings/api-keys/{key}/revoke/", observe=key_state).expect(
        302,       302,       404,       404,       404,       404,       404,
        "kept",    "revoked", "kept",    "kept",    "kept",    "kept",    "kept"),
    # Accounts (chatsite/urls.py) ----------------------------------------------------------
    Row("GET", "/accounts/login/").expect(
        200,       200,       200,       200,       200,       200,       200),
    Row("POST", "/accounts/logout/").expect(
        302,       302,       302,       302,       302,       302,       302),
    Row("GET", "/accounts/password_change/").expect(
        302,       200,       200,       200,       200,       200,       200),
    Row("GET", "/accounts/password_change/done/").expect(
        302,       200,       200,       200,       200,       200,       200),
    # chatsite sends no e-mail: Django's password-reset pages must not exist.
    Row("GET", "/accounts/password_reset/", "not routed").expect(
        404,       404,       404,       404,       404,       404,       404),
    # The site API (session; one row by key) ------------------------------------------------
    #   anon       owner      other      staff      viewer     convs      super
    Row("GET", "/api/conversations/", observe=listed).expect(
        401,       200,       200,       200,       200,       200,       200,
        "",        "listed",  "hidden",  "hidden",  "hidden",  "hidden",  "hidden"),
    Row("POST", "/api/conversations/", "an empty body", body={}).expect(
        401,       400,       400,       400,       400,       400,       400),
    Row("GET", "/api/conversations/{conversation}/").expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("GET", "/api/conversations/{conversation}/", "by API key", key=True).expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("PATCH", "/api/conversations/{conversation}/", body={"title": "Renamed"},
        observe=title_state).expect(
        401,       200,       404,       404,       404,       404,       404,
        "kept",    "renamed", "kept",    "kept",    "kept",    "kept",    "kept"),
    Row("DELETE", "/api/conversations/{conversation}/", observe=conversation_state).expect(
        401,       204,       404,       404,       404,       404,       404,
        "kept",    "gone",    "kept",    "kept",    "kept",    "kept",    "kept"),
    Row("POST", "/api/conversations/{empty}/messages/", "regenerate in an empty conversation",
        body={"action": "regenerate"}).expect(
        401,       400,       404,       404,       404,       404,       404),
    # Showing the version already shown: the owner's thread stays as it is.
    Row("POST", "/api/conversations/{conversation}/versions/", body={"message_id": "{message}"}
        ).expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("GET", "/api/turns/{request}/events", "an answer whose events have expired").expect(
        401,       410,       404,       404,       404,       404,       404),
    Row("GET", "/api/turns/{request}/events", "by API key", key=True).expect(
        401,       410,       404,       404,       404,       404,       404),
    Row("POST", "/api/turns/{request}/stop", "an answer that already ended").expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("POST", "/api/turns/{request}/stop", "by API key", key=True).expect(
        401,       200,       404,       404,       404,       404,       404),
    # /v1, by API key -----------------------------------------------------------------------
    Row("GET", "/v1/models", key=True).expect(
        401,       200,       200,       200,       200,       200,       200),
    Row("GET", "/v1/models", "by session: not accepted").expect(
        401,       401,       401,       401,       401,       401,       401),
    Row("GET", "/v1/models/{model}", key=True).expect(
        401,       200,       200,       200,       200,       200,       200),
    Row("POST", "/v1/chat/completions", "an empty body", body={}, key=True).expect(
        401,       400,       400,       400,       400,       400,       400),
    Row("POST", "/v1/responses", "an empty body", body={}, key=True).expect(
        401,       400,       400,       400,       400,       400,       400),
    Row("GET", "/v1/responses/resp_{request}", key=True).expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("POST", "/v1/responses/resp_{request}/cancel", "a response that already ended",
        key=True).expect(
        401,       200,       404,       404,       404,       404,       404),
    Row("POST", "/v1/embeddings", "an unknown URL", body={}, key=True).expect(
        404,       404,       404,       404,       404,       404,       404),
    # The admin site ------------------------------------------------------------------------
    #   anon       owner      other      staff      viewer     convs      super
    Row("GET", "/admin/").expect(
        302,       302,       302,       200,       200,       200,       200),
    Row("GET", "/admin/login/").expect(
        200,       200,       200,       302,       302,       302,       302),
    Row("GET", "/admin/password_change/").expect(
        302,       302,       302,       200,       200,       200,       200),
    Row("GET", "/admin/password_change/done/").expect(
        302,       302,       302,       200,       200,       200,       200),
    Row("POST", "/admin/logout/").expect(
        302,       302,       302,       302,       302,       302,       302),
    Row("GET", "/admin/jsi18n/").expect(
        302,       302,       302,       200,       200,       200,       200),
    Row("GET", "/admin/conversations/").expect(
        302,       302,       302,       404,       200,       200,       200),
    Row("GET", "/admin/auth/").expect(
        302,       302,       302,       404,       200,       404,       200),
    Row("GET", "/admin/autocomplete/?app_label=conversations&model_name=userlimits"
               "&field_name=user&term=own").expect(
        302,       302,       302,       403,       200,       403,       200),
    # Django's "view on site" redirect checks no model permission: any staff learns that an
    # object exists and where its page is (the owner's chat page: a 404 to anyone else).
    Row("GET", "/admin/r/{conversation_type}/{conversation}/").expect(
        302,       302,       302,       302,       302,       302,       302),
    # Conversations: metadata with "view conversation", message text with "view message" ---
    Row("GET", CHANGELIST).expect(
        302,       302,       302,       403,       200,       200,       200),
    Row("GET", CHANGELIST + "usage/").expect(
        302,       302,       302,       403,       200,       200,       200),
    Row("GET", CHANGELIST + "?q=aardvarks", "search message text", observe=search_hits).expect(
        302,       302,       302,       403,       200,       200,       200,
        "",        "",        "",        "",        "found",   "none",    "found"),
    Row("GET", CHANGELIST + "?q=planning", "search titles", observe=search_hits).expect(
        302,       302,       302,       403,       200,       200,       200,
        "",        "",        "",        "",        "found",   "found",   "found"),
    Row("GET", CHANGELIST + "?q=" + REQUEST_ID, "search request IDs", observe=search_hits).expect(
        302,       302,       302,       403,       200,       200,       200,
        "",        "",        "",        "",        "found",   "found",   "found"),
    Row("GET", TRANSCRIPT, "the transcript", observe=message_text).expect(
        302,       302,       302,       403,       200,       200,       200,
        "",        "",        "",        "",        "text",    "note",    "text"),
    Row("POST", TRANSCRIPT, "edit the title", body={"title": "Edited"}, observe=title_state).expect(
        302,       302,       302,       403,       403,       403,       403,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "kept"),
    Row("GET", CHANGELIST + "{conversation}/history/").expect(
        302,       302,       302,       403,       200,       200,       200),
    Row("GET", CHANGELIST + "add/").expect(
        302,       302,       302,       403,       403,       403,       403),
    Row("GET", CHANGELIST + "{conversation}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("POST", CHANGELIST + "{conversation}/delete/", body={"post": "yes"},
        observe=conversation_state).expect(
        302,       302,       302,       403,       403,       403,       302,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "gone"),
    Row("POST", CHANGELIST, "JSONL export action", body=action("export_jsonl", "{conversation}"),
        observe=export).expect(
        302,       302,       302,       403,       200,       200,       200,
        "none",    "none",    "none",    "none",    "text",    "none",    "text"),
    Row("POST", CHANGELIST, "CSV export action", body=action("export_csv", "{conversation}"),
        observe=export).expect(
        302,       302,       302,       403,       200,       200,       200,
        "none",    "none",    "none",    "none",    "text",    "none",    "text"),
    # Only the superuser may delete: the viewer is told "No action selected"; the
    # conversations-only reviewer has no action at all and sees the list again.
    Row("POST", CHANGELIST, "delete action (to its confirmation)",
        body=action("delete_selected", "{conversation}"), observe=conversation_state).expect(
        302,       302,       302,       403,       302,       200,       200,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "kept"),
    # Messages: their pages show the text, so they need "view message" ----------------------
    #   anon       owner      other      staff      viewer     convs      super
    Row("GET", "/admin/conversations/message/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/message/{message}/change/", observe=message_text).expect(
        302,       302,       302,       403,       200,       403,       200,
        "",        "",        "",        "",        "text",    "",        "text"),
    Row("GET", "/admin/conversations/message/{message}/history/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/message/add/").expect(
        302,       302,       302,       403,       403,       403,       403),
    Row("GET", "/admin/conversations/message/{message}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
    # API keys: revoking is a write, and needs "change API key" -----------------------------
    Row("GET", "/admin/conversations/apikey/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/apikey/{key}/change/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("POST", "/admin/conversations/apikey/", "revoke action", body=action("revoke", "{key}"),
        observe=key_state).expect(
        302,       302,       302,       403,       200,       403,       302,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "revoked"),
    Row("GET", "/admin/conversations/apikey/{key}/history/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/apikey/add/").expect(
        302,       302,       302,       403,       403,       403,       403),
    Row("GET", "/admin/conversations/apikey/{key}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
    # User limits ---------------------------------------------------------------------------
    Row("GET", "/admin/conversations/userlimits/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/userlimits/add/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/conversations/userlimits/{limits}/change/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/userlimits/{limits}/history/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/userlimits/{limits}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("POST", "/admin/conversations/userlimits/{limits}/change/",
        body={"user": "{owner}", "requests_per_minute": "500"}, observe=limits_state).expect(
        302,       302,       302,       403,       403,       403,       302,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "changed"),
    # Running answers, live (conversations.admin.live): "view message" to watch, and
    # "stop_turn" to stop; every watch and stop is recorded. The owner's answer has ended and
    # its events are gone (410); stopping it changes nothing, but is recorded.
    Row("GET", "/admin/conversations/message/running/").expect(
        302,       302,       302,       403,       200,       403,       200),
    # A stream that never ends: only its status is read (and nothing subscribes until then).
    Row("GET", "/admin/conversations/message/running/events/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/conversations/message/running/{message}/events/",
        observe=audited("view")).expect(
        302,       302,       302,       403,       410,       403,       410,
        "none",    "none",    "none",    "none",    "recorded", "none",   "recorded"),
    Row("POST", "/admin/conversations/message/running/{message}/stop/",
        observe=audited("stop")).expect(
        302,       302,       302,       403,       403,       403,       200,
        "none",    "none",    "none",    "none",    "none",    "none",    "recorded"),
    # Turn audit records: read-only for everyone, deleted by nobody -------------------------
    Row("GET", "/admin/conversations/turnaudit/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/conversations/turnaudit/{audit}/change/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/conversations/turnaudit/{audit}/history/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/conversations/turnaudit/add/").expect(
        302,       302,       302,       403,       403,       403,       403),
    Row("GET", "/admin/conversations/turnaudit/{audit}/delete/").expect(
        302,       302,       302,       403,       403,       403,       403),
    # Users and groups (django.contrib.auth's admin) ----------------------------------------
    Row("GET", "/admin/auth/user/").expect(
        302,       302,       302,       403,       200,       403,       200),
    # Unlocking a login locked by failed passwords is a write: it needs "change user".
    Row("POST", "/admin/auth/user/", "unlock login action",
        body=action("unlock_login", "{owner}")).expect(
        302,       302,       302,       403,       200,       403,       302),
    Row("GET", "/admin/auth/user/{owner}/change/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("POST", "/admin/auth/user/{owner}/change/", "make a superuser",
        body={"is_superuser": "on"}, observe=superuser_state).expect(
        302,       302,       302,       403,       403,       403,       200,
        "kept",    "kept",    "kept",    "kept",    "kept",    "kept",    "kept"),
    Row("GET", "/admin/auth/user/{owner}/password/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/user/{owner}/history/").expect(
        302,       302,       302,       403,       200,       403,       200),
    Row("GET", "/admin/auth/user/add/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/user/{owner}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/group/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/group/add/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/group/{group}/change/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/group/{group}/history/").expect(
        302,       302,       302,       403,       403,       403,       200),
    Row("GET", "/admin/auth/group/{group}/delete/").expect(
        302,       302,       302,       403,       403,       403,       200),
)
# fmt: on


# The world the table is about ------------------------------------------------------------

VIEWER_PERMISSIONS = (
    "view_conversation",
    "view_message",
    "view_apikey",
    "view_userlimits",
    "view_user",
)


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[SimpleNamespace]:
    """The world of build_world, made once for the module in a transaction that is rolled
    back at its end; each test runs in a savepoint inside it, so what a request changes is
    undone before the next."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


def build_world() -> SimpleNamespace:
    """One user per role (no passwords: hashing is slow, and sessions need none), each
    logged in and with an API key; the owner's conversation with a question and its answer,
    an empty one, a key and limits; and a group."""
    users_model = get_user_model()
    staff_flags = {STAFF: {}, VIEWER: {}, CONVS: {}, SUPER: {"is_superuser": True}}
    users = {ANON: None}
    for role in ROLES[1:]:
        flags = {"is_staff": True, **staff_flags[role]} if role in staff_flags else {}
        users[role] = users_model.objects.create_user(role.replace(" ", "-"), **flags)
    users[VIEWER].user_permissions.set(Permission.objects.filter(codename__in=VIEWER_PERMISSIONS))
    users[CONVS].user_permissions.set(Permission.objects.filter(codename="view_conversation"))

    owner = users[OWNER]
    conversation = Conversation.objects.create(owner=owner, title=TITLE, model="dev/dev-chat")
    for role, content in (("user", QUESTION), ("assistant", ANSWER)):
        message = Message.objects.create(
            conversation=conversation,
            user=owner,
            role=role,
            content=content,
            is_answer=role == "assistant",
            request_id=REQUEST_ID,
        )
    empty = Conversation.objects.create(owner=owner, title="Empty", model="dev/dev-chat")
    owners_key, _ = api_key_create(user=owner, name="laptop")
    limits = UserLimits.objects.create(user=owner, requests_per_minute=5)
    group = Group.objects.create(name="reviewers")
    audit = TurnAudit.objects.create(
        staff=users[SUPER], action="view", owner=owner, request_id=REQUEST_ID, message=message
    )
    raw_keys = {role: api_key_create(user=u, name="matrix")[1] for role, u in users.items() if u}
    sessions = {role: session_key(u) for role, u in users.items() if u}
    return SimpleNamespace(
        users=users,
        raw_keys=raw_keys,
        sessions=sessions,
        key_prefix=owners_key.prefix,
        ids={
            "conversation": conversation.pk,
            "conversation_type": ContentType.objects.get_for_model(Conversation).pk,
            "empty": empty.pk,
            "message": message.pk,
            "key": owners_key.pk,
            "limits": limits.pk,
            "owner": owner.pk,
            "group": group.pk,
            "audit": audit.pk,
            "model": providers.default_model_key(),
            "request": REQUEST_ID,
        },
    )


def session_key(user) -> str:
    """Log the user in once for the module; each test's client carries the session cookie."""
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def fill(value, ids: dict):
    """Fill the {placeholders} of a path or body; a lone placeholder keeps its ID's type."""
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    return value.format(**ids) if isinstance(value, str) else value


def client_for(role: str, world: SimpleNamespace, *, key: bool) -> Client:
    client = Client(enforce_csrf_checks=True, headers={"X-CSRFToken": CSRF_SECRET})
    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    user = world.users[role]
    if user is not None and key:
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {world.raw_keys[role]}"
    elif user is not None:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[role]
    return client


JSON_PATHS = ("/api/", "/v1/", "/chat/stream/")


def send(row: Row, role: str, world: SimpleNamespace) -> HttpResponse:
    client = client_for(role, world, key=row.key)
    path = row.path.format(**world.ids)
    kwargs = {}
    if row.body is not None:
        body = fill(row.body, world.ids)
        if path.startswith(JSON_PATHS):
            kwargs = {"data": json.dumps(body), "content_type": "application/json"}
        else:
            kwargs = {"data": body}
    return getattr(client, row.method.lower())(path, **kwargs)


def outcome(row: Row, response: HttpResponse, world: SimpleNamespace) -> str:
    effect = row.observe(response, world) if row.observe else ""
    return f"{response.status_code} {effect}".strip()


CASES = [
    pytest.param(row, role, str(expected), id=f"{row.label} as {role}")
    for row in ACCESS
    for role, expected in zip(ROLES, row.expected, strict=True)
]


@pytest.mark.parametrize(("row", "role", "expected"), CASES)
def test_every_url_answers_each_role_as_the_access_table_says(row, role, expected, world):
    response = send(row, role, world)

    got = outcome(row, response, world)

    assert got == expected, f"{row.label} as {role}: expected {expected!r}, got {got!r}"


def named_routes(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    """Yield the full route of every named URL pattern, joined as ResolverMatch.route is."""
    for pattern in resolver.url_patterns:
        inner = str(pattern.pattern)
        route = prefix + inner.removeprefix("^") if prefix else inner
        if isinstance(pattern, URLResolver):
            yield from named_routes(pattern, route)
        elif pattern.name:
            yield route


def test_the_access_table_has_a_row_for_every_named_url():
    """A new URL (a page, an API endpoint, a model or view in the admin) needs its row.

    Routes are compared, not names: a view put ahead of a named one (the throttled admin
    login) answers on its route."""
    ids = dict.fromkeys(("conversation", "conversation_type", "empty", "message"), 1)
    ids |= dict.fromkeys(("key", "limits", "owner", "group", "audit"), 1)
    ids |= {"model": "dev/dev-chat", "request": "req-1"}
    in_table = set()
    for row in ACCESS:
        with contextlib.suppress(Resolver404):  # a row may check that a URL does not exist
            in_table.add(resolve(urlsplit(row.path.format(**ids)).path).route)

    missing = set(named_routes(get_resolver())) - in_table

    assert not missing, f"URLs without a row in ACCESS: {sorted(missing)}"
