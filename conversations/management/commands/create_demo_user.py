from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create (or reset) the demo user for local development, and print its login."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args, username: str, password: str, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo user has a known password; create it only with DEBUG=1.")
        user, _ = get_user_model().objects.get_or_create(username=username)
        # A superuser, so the demo shows the admin review of saved conversations too.
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"Demo login: username {username!r}, password {password!r}")
