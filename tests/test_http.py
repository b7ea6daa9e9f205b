"""Errors nobody planned for still reach API clients as JSON, never as Django's HTML page.

The broken views below stand in for any bug: Django handles them as it would a real one.
"""

import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import include, path
from psycopg_pool import PoolTimeout

from conversations.http import as_chat_error
from conversations.v1.chat_completions import v1_view
from conversations.web.site_api import site_api_view

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@v1_view("GET")
async def broken_v1(request, user, *, request_id):
    raise RuntimeError("a bug in a /v1 view")


@site_api_view("GET")
async def broken_site_api(request, user, *, request_id):
    raise RuntimeError("a bug in a site API view")


def broken_plain_view(request):
    raise RuntimeError("a bug outside the API decorators")


urlpatterns = [
    path("v1/broken", broken_v1),
    path("api/broken/", broken_site_api),
    path("api/plain-broken/", broken_plain_view),
    path("", include("chatsite.urls")),
]
handler404 = "conversations.web.views.page_not_found"
handler500 = "conversations.web.views.server_error"


def test_an_unexpected_error_in_v1_is_openais_json_500(alice, make_api_key):
    client = Client(raise_request_exception=False)
    response = client.get("/v1/broken", HTTP_AUTHORIZATION=f"Bearer {make_api_key(alice)}")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert response["X-Request-ID"] in error["message"]


def test_an_unexpected_error_in_the_site_api_is_json_500(alice):
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get("/api/broken/")

    assert response.status_code == 500
    assert set(response.json()["error"]) == {"message"}


def test_an_error_outside_the_api_views_is_still_json_under_api(db):
    response = Client(raise_request_exception=False).get("/api/plain-broken/")
    assert response.status_code == 500
    assert response.json() == {"error": {"message": "The server failed unexpectedly."}}


def test_an_unknown_api_url_is_json_404(db):
    response = Client().get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "Not found."}}


def test_pages_keep_djangos_html_404(db):
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_pool_timeout_is_a_503_to_retry_not_a_failure(rf):
    # What Django raises when no pooled connection came free in time.
    try:
        try:
            raise PoolTimeout("couldn't get a connection after 10.00 sec")
        except PoolTimeout as timeout:
            raise OperationalError(str(timeout)) from timeout
    except OperationalError as exc:
        error = as_chat_error(exc, rf.get("/v1/models").path, "req-busy-0001")

    assert error.status == 503
    assert error.headers == {"Retry-After": "5"}
