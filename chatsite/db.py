"""The psycopg pool after a database restart: one dead connection clears out all the dead
ones, and connections are tried again every second, not ever more rarely.

psycopg_pool's own check (`ConnectionPool.check_connection`) finds a dead connection when it
is handed out, and the pool then waits (1 s, 2 s, 4 s…) before trying the next one. After a
database restart every pooled connection is dead, so ten of them would cost the requests that
meet them up to the pool's whole timeout. Here the first dead connection found starts one
sweep (`pool.check()`, in a thread of its own) that tests every idle connection at once and
replaces the dead ones, so a restart costs a request a second's wait, never a failure.
"""

import threading

from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

# psycopg_pool tries a failed connection again after 1, 2, 4, 8, 16, 32 s…: after a
# 35-second outage its next attempt came up to half a minute after the database was back,
# and saves failed with PoolTimeout 13 s after it returned. It has no setting for this, so
# the wait between attempts is capped: a refused connection costs nothing, and one that
# hangs is bounded by the connection's connect_timeout.
RECONNECT_MAX_DELAY = 0.5


def cap_reconnect_delay(max_delay: float = RECONNECT_MAX_DELAY) -> None:
    """Make the pool try a lost connection again at least every `max_delay` seconds."""
    update_delay = AttemptWithBackoff.update_delay
    if getattr(update_delay, "capped", False):
        return

    def capped_update_delay(self: AttemptWithBackoff, now: float) -> None:
        update_delay(self, now)
        self.delay = min(self.delay, max_delay)

    capped_update_delay.capped = True  # type: ignore[attr-defined]
    AttemptWithBackoff.update_delay = capped_update_delay


cap_reconnect_delay()

_sweeping = threading.Lock()


def check_pooled_connection(conn) -> None:
    """Raise if the connection is dead; on the first dead one, sweep the whole pool."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        if not _sweeping.locked():
            threading.Thread(target=_sweep, name="db-pool-sweep", daemon=True).start()
        raise


def _sweep() -> None:
    if not _sweeping.acquire(blocking=False):
        return  # a sweep is already running; its checks come back here and stop
    try:
        from django.db import connections

        connections["default"].pool.check()
    except Exception:
        pass  # the database may still be down: the pool reconnects on its own
    finally:
        _sweeping.release()
