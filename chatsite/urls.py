from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="conversations:chat", permanent=False)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]

# The APIs answer in JSON even when Django itself has to answer (see conversations.views).
handler404 = "conversations.views.page_not_found"
handler500 = "conversations.views.server_error"
