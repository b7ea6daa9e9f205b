"""Provide `manage.py devllm`, which serves the development LLM until killed."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from devllm.server import run


class Command(BaseCommand):
    """Serve the deterministic OpenAI-compatible development LLM."""

    help = "Serve a deterministic OpenAI-compatible LLM for development and tests."

    # The server needs no database, so skip Django's system checks and migrations warning.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """Declare --host, --port, --delay-ms and --api-key."""
        parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
        parser.add_argument("--port", type=int, default=8001, help="TCP port (8001; 0 picks one)")
        parser.add_argument(
            "--delay-ms", type=float, default=30, help="pause between streamed tokens (30)"
        )
        parser.add_argument("--api-key", default=None, help="require this bearer token on /v1")

    def handle(self, *args: Any, **options: Any) -> None:
        """Start the server and block until SIGINT or SIGTERM."""

        def announce(line: str) -> None:
            self.stdout.write(line)
            # Flush so `make run` and process supervisors see the line before any request.
            self.stdout.flush()

        run(
            options["host"],
            options["port"],
            delay_ms=options["delay_ms"],
            api_key=options["api_key"],
            announce=announce,
        )
