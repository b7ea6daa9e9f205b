"""The site's own small pages around the apps: the favicon, and logging out with a notice."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static

LOGGED_OUT_NOTICE = "You have been logged out."


def favicon(request: HttpRequest) -> HttpResponse:
    """Send /favicon.ico, which browsers ask for on pages without an icon link (the admin's,
    a JSON answer), to the site's icon. Not permanent: a browser would keep the target."""
    return HttpResponseRedirect(static("favicon.svg"))


class LogoutView(auth_views.LogoutView):
    """Django's log out, then the login page says it happened."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        # Added after the session was flushed: the message goes in a cookie of its own
        # (the messages framework's first storage), read once by the login page.
        messages.info(request, LOGGED_OUT_NOTICE)
        return response
