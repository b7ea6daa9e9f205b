"""The psycopg pool's connection check: one dead connection clears out all the dead ones.

psycopg_pool's own check (`ConnectionPool.check_connection`) finds a dead connection when it
is handed out, and the pool then waits (1 s, 2 s, 4 s…) before trying the next one. After a
database restart every pooled connection is dead, so ten of them would cost the requests that
meet them up to the pool's whole timeout. Here the first dead connection found starts one
sweep (`pool.check()`, in a thread of its own) that tests every idle connection at once and
replaces the dead ones, so a restart costs a request a second's wait, never a failure.
"""

import threading

from psycopg_pool import ConnectionPool

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
