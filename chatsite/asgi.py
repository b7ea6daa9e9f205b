"""ASGI entry point: daphne (or any ASGI server) serves `chatsite.asgi:application`."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

application = get_asgi_application()

if settings.SERVE_STATIC:
    # Django's own async static handler, for development and small installs; behind nginx,
    # let nginx serve STATIC_ROOT instead (see the README).
    application = ASGIStaticFilesHandler(application)
