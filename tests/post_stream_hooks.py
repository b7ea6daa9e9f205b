"""Post-stream hooks for the tests: one that records each turn, one that always fails."""

import os

from conversations.records import FinishedTurn


def record(turn: FinishedTurn) -> None:
    """Append the turn's request ID and status to the file named by HOOK_RECORD_FILE."""
    with open(os.environ["HOOK_RECORD_FILE"], "a") as out:
        out.write(f"{turn.request_id} {turn.status}\n")


def explode(turn: FinishedTurn) -> None:
    raise RuntimeError("this hook always fails")
