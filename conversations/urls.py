from django.urls import path

from conversations import views

app_name = "conversations"

urlpatterns = [
    path("", views.chat, name="chat"),
    path("<int:pk>/", views.chat, name="conversation"),
    path("stream/", views.chat_stream, name="stream"),
]
