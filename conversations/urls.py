from django.urls import path, re_path, register_converter

from conversations.v1 import chat_completions, responses
from conversations.web import site_api, views


class RequestIdConverter:
    """A request ID as chatsite accepts one (responses.SANE_REQUEST_ID, and the suffix of a
    title's call): anything else names no answer, and is a 404 before any query (a NUL
    character would otherwise reach the database, which refuses it)."""

    regex = r"[A-Za-z0-9._:-]{1,160}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RequestIdConverter, "request_id")

app_name = "conversations"

urlpatterns = [
    path("health", views.health, name="health"),
    # The chat page.
    path("chat/", views.chat, name="chat"),
    path("chat/<int:pk>/", views.chat, name="conversation"),
    path("chat/stream/", views.chat_stream, name="stream"),
    path("settings/api-keys/", views.api_keys, name="api_keys"),
    path("settings/api-keys/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    # The site's own JSON API (session or API key).
    path("api/conversations/", site_api.conversations, name="api_conversations"),
    path("api/conversations/<int:pk>/", site_api.conversation, name="api_conversation"),
    path(
        "api/conversations/<int:pk>/messages/",
        site_api.conversation_messages,
        name="api_conversation_messages",
    ),
    path(
        "api/conversations/<int:pk>/versions/",
        site_api.conversation_versions,
        name="api_conversation_versions",
    ),
    path(
        "api/turns/<request_id:turn_request_id>/events",
        site_api.turn_events,
        name="api_turn_events",
    ),
    path("api/turns/<request_id:turn_request_id>/stop", site_api.turn_stop, name="api_turn_stop"),
    # OpenAI-compatible (API key); any other /v1 URL is OpenAI's JSON 404.
    path("v1/models", chat_completions.models, name="v1_models"),
    path("v1/models/<path:model_id>", chat_completions.model, name="v1_model"),
    path("v1/chat/completions", chat_completions.chat_completions, name="v1_chat_completions"),
    path("v1/responses", responses.responses, name="v1_responses"),
    path("v1/responses/<request_id:response_id>", responses.response, name="v1_response"),
    path(
        "v1/responses/<request_id:response_id>/cancel",
        responses.response_cancel,
        name="v1_response_cancel",
    ),
    re_path(r"^v1/(?P<path>.*)$", chat_completions.unknown_url, name="v1_unknown"),
]
