"""WebSocket routes (chatsite.asgi routes the "websocket" protocol here)."""

from django.urls import path

from conversations.web.consumers import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
