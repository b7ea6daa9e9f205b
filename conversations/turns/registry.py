"""The turns this process runs, and the signals that reach them from any server process
through the bus (conversations.bus): Stop, and readers attaching or leaving elsewhere.

A request can reach any process behind the load balancer, while the turn runs in one of
them. Each process keeps the turns it runs in a registry (readers of a local turn find it
here). A signal goes to every process; the one that runs the turn acts on it, the others
find nothing to do.

* `request_stop` (the control lane): stop the turn (Stop); a turn that has not started yet
  is stopped as it starts (a Stop pressed a moment after Enter).
* `signal_reader` (the readers lane): readers in another process attached (+1) or left
  (-1), netted per turn over READER_SIGNAL_DELAY, so that the turn's disconnect policy counts
  them like readers of its own. A process that dies with readers attached never sends their
  -1: the turn then goes on, the safe side. A lost signal is the same.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from conversations import bus

if TYPE_CHECKING:
    from conversations.models import Message
    from conversations.turns.runner import TurnRun

logger = logging.getLogger(__name__)

STOP = "turn.stop"
READER = "turn.reader"

_running: dict[tuple[int, str], "TurnRun"] = {}

# Stops for turns this process does not run (yet). A page that chose its request ID can press
# Stop a moment after Enter, before its own request has started the turn: the turn then ran
# on, charged, and nobody wanted it (an audit: 4 of 6 tries). Each process keeps such stops
# for EARLY_STOP_SECONDS, and a turn that starts here within them stops at once. At most
# EARLY_STOPS_MAX, the oldest going first: a flood of stops for made-up IDs cannot grow it.
EARLY_STOP_SECONDS = 60.0
EARLY_STOPS_MAX = 10_000
_early_stops: dict[tuple[int, str], float] = {}


def register(run: "TurnRun") -> None:
    """Note a turn this process runs, so that a Stop from anywhere can reach it; one whose
    Stop came first is stopped now."""
    key = (run.turn.user_id, run.turn.request_id)
    _running[key] = run
    bus.start()
    stopped_at = _early_stops.pop(key, None)
    if stopped_at is not None and time.monotonic() - stopped_at < EARLY_STOP_SECONDS:
        run.stop()


def _remember_stop(key: tuple[int, str]) -> None:
    _early_stops.pop(key, None)
    _early_stops[key] = time.monotonic()  # dicts keep insertion order: the oldest first
    while len(_early_stops) > EARLY_STOPS_MAX:
        del _early_stops[next(iter(_early_stops))]


def unregister(run: "TurnRun") -> None:
    key = (run.turn.user_id, run.turn.request_id)
    if _running.get(key) is run:
        del _running[key]


def count() -> int:
    """How many turns this process runs now."""
    return len(_running)


class Claim:
    """A place among the turns this process may run, held from a request's first step until
    its turn runs (registered) or is refused: checking the count and claiming a place in one
    step, with no await between them, keeps a burst of requests from all passing the check
    before any of their turns starts."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        global _claims
        _claims += 1
        self._held = True

    def release(self) -> None:
        """Give the place back; twice is harmless."""
        global _claims
        if self._held:
            self._held = False
            _claims -= 1


_claims = 0


def claim(limit: int) -> Claim | None:
    """Claim a place for a new turn if this process runs and has claimed fewer than `limit`
    (0: no limit); None when it is full."""
    if limit and len(_running) + _claims >= limit:
        return None
    return Claim()


def all_runs() -> list["TurnRun"]:
    """Every turn this process runs now."""
    return list(_running.values())


def find(*, user_id: int, request_id: str) -> "TurnRun | None":
    """Return the user's turn if this process runs it."""
    return _running.get((user_id, request_id))


def stop_here(*, user_id: int, request_id: str) -> bool:
    """Stop the user's turn if this process runs it, and return True; else keep the Stop
    for a while, in case the turn is about to start here (see EARLY_STOP_SECONDS)."""
    run = find(user_id=user_id, request_id=request_id)
    if run is None:
        _remember_stop((user_id, request_id))
        return False
    run.stop()
    return True


async def request_stop(*, user_id: int, request_id: str) -> None:
    """Ask whichever process runs the user's turn to stop it."""
    if stop_here(user_id=user_id, request_id=request_id):
        return
    await bus.send(bus.CONTROL, {"type": STOP, "user_id": user_id, "request_id": request_id})


async def stop_and_wait(answer: "Message", *, patience: float = 2.0) -> None:
    """Stop the answer's turn wherever it runs, and wait up to `patience` seconds for it to
    be saved as ended; `answer` is refreshed as the database then has it."""
    await request_stop(user_id=answer.user_id, request_id=answer.request_id)
    deadline = asyncio.get_running_loop().time() + patience
    while answer.status == answer.Status.STREAMING:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
        await answer.arefresh_from_db()


# Reader signals wait this long to go out together, a turn's +1s and -1s netted: a reader
# attaching and leaving within it sends nothing (a flood of them sent thousands a second).
READER_SIGNAL_DELAY = 0.05
_pending_signals: dict[tuple[int, str], int] = {}
_signalling: asyncio.Task | None = None


async def signal_reader(*, user_id: int, request_id: str, change: int) -> None:
    """Tell the process running the user's turn that a reader here attached (+1) or left
    (-1), within READER_SIGNAL_DELAY. Best effort: a failure is logged, and the turn's policy
    then counts only the readers it heard of."""
    global _signalling
    key = (user_id, request_id)
    _pending_signals[key] = _pending_signals.get(key, 0) + change
    loop = asyncio.get_running_loop()
    if _signalling is None or _signalling.done() or _signalling.get_loop() is not loop:
        _signalling = loop.create_task(_send_signals())


async def _send_signals() -> None:
    await asyncio.sleep(READER_SIGNAL_DELAY)
    changes = [[*key, change] for key, change in _pending_signals.items() if change]
    _pending_signals.clear()
    if not changes:
        return
    try:
        await bus.send(bus.READERS, {"type": READER, "changes": changes})
    except Exception:
        logger.warning("Could not signal readers of %d turn(s)", len(changes), exc_info=True)


@bus.handle(STOP)
def _stop(message: dict) -> None:
    stop_here(user_id=message.get("user_id"), request_id=message.get("request_id"))


@bus.handle(READER)
def _readers(message: dict) -> None:
    for user_id, request_id, change in message.get("changes", ()):
        run = find(user_id=user_id, request_id=request_id)
        if run is None or not isinstance(change, int):
            continue
        for _ in range(min(abs(change), 10_000)):
            if change > 0:
                run.attach()
            else:
                run.detach()
