"""Bad input on every write endpoint and query parameter: a 4xx that names the problem,
nothing counted against the user's limits, and the database unchanged.

Run on PostgreSQL (as CI does), a NUL character that slipped through would be a 500: the
database refuses it in text columns.
"""

import json
import re

import pytest
from django.test import Client, RequestFactory
from django_ratelimit.core import get_usage

from conversations.models import ApiKey, Conversation, Message

pytestmark = pytest.mark.django_db

NUL = "before\x00after"


@pytest.fixture
def v1(alice, make_api_key) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {make_api_key(alice)}")


@pytest.fixture
def conversation(alice) -> Conversation:
    return Conversation.objects.create(owner=alice, title="Kept", model="dev/dev-chat")


def requests_counted(user) -> int:
    usage = get_usage(
        RequestFactory().post("/"),
        group="chat",
        key=lambda group, request: str(user.pk),
        rate="1000/m",
        increment=False,
    )
    return usage["count"]


def rows() -> tuple[int, int, int, list[str]]:
    titles = sorted(Conversation.objects.values_list("title", flat=True))
    return Conversation.objects.count(), Message.objects.count(), ApiKey.objects.count(), titles


def post_json(client: Client, url: str, body: object, method: str = "post"):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


def v1_body(messages: list) -> dict:
    return {"model": "dev/dev-chat", "messages": messages}


# (name, client fixture, call, expected status, the field the error names)
CASES = [
    (
        "chat message with NUL",
        "alice_client",
        lambda c, conv: post_json(c, "/chat/stream/", {"message": NUL}),
        400,
        "message",
    ),
    (
        "edited message with NUL",
        "alice_client",
        lambda c, conv: post_json(
            c, "/chat/stream/", {"message": NUL, "action": "edit", "conversation": conv.pk}
        ),
        400,
        "message",
    ),
    (
        "site API message with NUL",
        "alice_client",
        lambda c, conv: post_json(c, f"/api/conversations/{conv.pk}/messages/", {"message": NUL}),
        400,
        "message",
    ),
    (
        "v1 message with NUL",
        "v1",
        lambda c, conv: post_json(
            c, "/v1/chat/completions", v1_body([{"role": "user", "content": NUL}])
        ),
        400,
        "messages[0].content",
    ),
    (
        "v1 text part with NUL",
        "v1",
        lambda c, conv: post_json(
            c,
            "/v1/chat/completions",
            v1_body([{"role": "user", "content": [{"type": "text", "text": NUL}]}]),
        ),
        400,
        "messages[0].content",
    ),
    (
        "v1 prompt with too many messages",
        "v1",
        lambda c, conv: post_json(
            c, "/v1/chat/completions", v1_body([{"role": "user", "content": ""}] * 1001)
        ),
        400,
        "messages",
    ),
    (
        "title with NUL",
        "alice_client",
        lambda c, conv: post_json(c, f"/api/conversations/{conv.pk}/", {"title": NUL}, "patch"),
        400,
        "title",
    ),
    (
        "title too long",
        "alice_client",
        lambda c, conv: post_json(
            c, f"/api/conversations/{conv.pk}/", {"title": "t" * 201}, "patch"
        ),
        400,
        "title",
    ),
    (
        "limit that is not an ASCII number",
        "alice_client",
        lambda c, conv: c.get("/api/conversations/?limit=²"),
        400,
        "limit",
    ),
    (
        "offset beyond any page",
        "alice_client",
        lambda c, conv: c.get("/api/conversations/?offset=99999999999999999999"),
        400,
        "offset",
    ),
    (
        "source that does not exist",
        "alice_client",
        lambda c, conv: c.get("/api/conversations/?source=mail"),
        400,
        "source",
    ),
]


@pytest.mark.parametrize(
    ("client_name", "call", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_refused_by_name_uncounted_and_unwritten(
    request, alice, conversation, client_name, call, status, field
):
    client = request.getfixturevalue(client_name)
    before, counted = rows(), requests_counted(alice)

    response = call(client, conversation)

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error.get("field", error.get("param")) == field
    assert rows() == before
    assert requests_counted(alice) == counted


@pytest.mark.parametrize(
    ("name", "message"),
    [(NUL, "NUL character"), ("k" * 101, "at most 100")],
    ids=["NUL", "too long"],
)
def test_a_bad_key_name_is_explained_on_the_page(alice_client, name, message):
    before = rows()
    response = alice_client.post("/settings/api-keys/", {"name": name})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert rows() == before


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/admin/conversations/conversation/usage/?end=9999-12-31", "between 1970 and 9000"),
        ("/admin/conversations/conversation/usage/?start=0000-01-01", "Dates must look like"),
        ("/admin/conversations/conversation/?created_at__year=99999999999", "created_at__year"),
        ("/admin/conversations/conversation/?created_at__year=2026&created_at__month=13", "month"),
        ("/admin/conversations/message/?created_at__year=%C2%B2", "created_at__year"),
    ],
)
def test_admin_query_parameters_that_are_no_dates_are_a_400(make_user, url, message):
    client = Client()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))

    response = client.get(url)

    assert response.status_code == 400
    assert message in response.content.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/turns/abc%00def12345/events"),
        ("post", "/api/turns/abc%00def12345/stop"),
        ("get", "/v1/responses/resp_abc%00def12345"),
        ("post", "/v1/responses/resp_abc%00def12345/cancel"),
        ("get", "/api/turns/" + "x" * 161 + "/events"),
    ],
)
def test_an_id_no_request_could_have_is_a_json_404_without_a_query(
    v1, method, path, django_assert_num_queries
):
    """A NUL (or any character a request ID cannot hold) reached PostgreSQL, which refuses
    it: a JSON 500. Such an ID names nothing, and never gets near the database."""
    with django_assert_num_queries(0):
        response = getattr(v1, method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


@pytest.mark.parametrize("path", ["/v1/responses/resp_abc%00def12345", "/api/turns/a%00b/events"])
def test_a_404_from_djangos_handler_keeps_the_request_id_the_client_sent(v1, path):
    response = v1.get(path, headers={"X-Request-ID": "client-chosen-id-1"})

    assert response.status_code == 404
    assert response["X-Request-ID"] == "client-chosen-id-1"
