from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from chatsite.views import LogoutView, favicon
from conversations.accounts.logins import AdminLoginForm, LoginForm, login_view

# The admin's login counts failed passwords against the same limits as the site's, and is
# wrapped like the site's. Set on the site before admin.site.urls (below) routes its login.
admin.site.login_form = AdminLoginForm
admin.site.login = login_view(admin.site.login)

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="conversations:chat", permanent=False)),
    # Log in, log out and change a password. Not django.contrib.auth.urls as a whole: chatsite
    # sends no e-mail, so its password-reset pages must not exist.
    path(
        "accounts/login/",
        login_view(auth_views.LoginView.as_view(authentication_form=LoginForm)),
        name="login",
    ),
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]

# The APIs answer in JSON even when Django itself has to answer (see conversations.web.views).
handler404 = "conversations.web.views.page_not_found"
handler500 = "conversations.web.views.server_error"
