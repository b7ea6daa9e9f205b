"""Checkpoints: the running answers' partial text and heartbeat, written to their rows.

A process killed mid-answer (SIGKILL, a crash, the machine going away) runs no save. So
while answers stream, one task per process writes every running answer's text so far and
a heartbeat time to its row every TURN_CHECKPOINT_SECONDS: at most two statements for all
of them (services.turns_checkpoint), only the text of answers that changed. An answer whose
heartbeat goes stale lost its process, and is marked interrupted with the text it had
(services.turns_close_interrupted, run by conversations.turns.lifecycle).

A failed checkpoint (the database away) is logged and tried again next time; it never
touches the turn itself.
"""

import asyncio
import logging

from django.conf import settings

from conversations import services
from conversations.executors import in_post_stream_thread
from conversations.turns import registry

logger = logging.getLogger(__name__)

_checkpointing: asyncio.Task | None = None


def ensure_checkpointing() -> None:
    """Start this process's checkpoint task, unless it runs already; it ends by itself
    when no turn runs here."""
    global _checkpointing
    if _checkpointing is None or _checkpointing.done():
        _checkpointing = asyncio.get_running_loop().create_task(
            _checkpoint_while_running(), name="turn-checkpoints"
        )


async def _checkpoint_while_running() -> None:
    while True:
        await asyncio.sleep(settings.TURN_CHECKPOINT_SECONDS)
        if not await checkpoint_running_turns():
            return


async def checkpoint_running_turns() -> int:
    """Checkpoint every turn this process runs; return how many there were."""
    runs = registry.all_runs()
    changed, unchanged_ids, marks = [], [], []
    for run in runs:
        chunks = run.accumulator.token_chunks
        if chunks != run.checkpointed_chunks:
            # Chunks are added and published in one step, so the text and the count of
            # events agree here.
            changed.append(run.accumulator.checkpoint(run.turn, through_event=len(run.events)))
            marks.append((run, chunks))
        else:
            unchanged_ids.append(run.turn.assistant_message_id)
    if not runs:
        return 0
    try:
        await in_post_stream_thread(
            services.turns_checkpoint, changed=changed, unchanged_ids=unchanged_ids
        )
    except Exception:
        logger.warning("Checkpointing %d running answer(s) failed", len(runs), exc_info=True)
        return len(runs)
    for run, chunks in marks:
        run.checkpointed_chunks = chunks
    return len(runs)
