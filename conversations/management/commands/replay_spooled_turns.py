from django.core.management.base import BaseCommand, CommandError

from conversations.turns import spool
from conversations.turns.saving import replay_spooled_turns


class Command(BaseCommand):
    help = (
        "Save the turns spooled while the database was unreachable (TURN_SPOOL_DIR) into it. "
        "Safe to run at any time and any number of times: a turn already saved is skipped. "
        "Server processes also do this on their own once the database is back."
    )

    def handle(self, *args, **options) -> None:
        result = replay_spooled_turns()
        self.stdout.write(
            f"Spool {spool.spool_dir()}: {result.written} turn(s) saved, "
            f"{result.already_saved} already saved, {result.unreadable} unreadable line(s) "
            f"set aside, {result.remaining} left for later."
        )
        if result.remaining:
            raise CommandError("The database failed during the replay; run this again later.")
