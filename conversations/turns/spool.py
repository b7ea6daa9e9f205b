"""A durable local spool for finished turns that the database could not take.

When PostgreSQL is unreachable as a turn ends, the turn is not lost: it is appended as one
JSON line to this process's file in settings.TURN_SPOOL_DIR and fsynced before the client is
told it ended. Once the database is back, every file in the directory (this process's, and
those of processes that died meanwhile) is replayed into it.

Exactly once: a replay writes a turn only where its answer row still waits for it (streaming,
or interrupted by a sweep that did not know the spool had it; see
services.save_finished_turn), so replaying a file twice, or after a replay that stopped half
way, writes nothing twice. A file is emptied only once all of it has been replayed.

Writers and replayers lock a file with flock. A file is emptied, never removed while in use,
so that a writer waiting for the lock cannot append to a name that no longer exists.
"""

import dataclasses
import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from conversations.records import FinishedTurn

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"


def spool_dir() -> Path:
    return Path(settings.TURN_SPOOL_DIR)


def process_spool_path() -> Path:
    """This process's spool file: one per host and process, so writers never interleave."""
    return spool_dir() / f"turns-{socket.gethostname()}-{os.getpid()}{SUFFIX}"


def spool_turn(turn: FinishedTurn) -> Path:
    """Append the finished turn to this process's spool file and fsync it; return the path.

    Blocking (it waits for the disk): call it from a worker thread.
    """
    path = process_spool_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    line = json.dumps(dataclasses.asdict(turn), ensure_ascii=False).encode() + b"\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            # A crash cut the last line short: end it, so that this one stays whole.
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_directory(path.parent)  # the new file's name must survive a crash too
    return path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ReplayResult:
    written: int = 0  # turns saved into the database now
    already_saved: int = 0  # turns the database had already (a second replay)
    unreadable: int = 0  # lines that were not a turn (set aside in a .rejected file)
    remaining: int = 0  # turns left in the spool because the database failed

    def __iadd__(self, other: "ReplayResult") -> "ReplayResult":
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self


def pending_files() -> list[Path]:
    """The spool files that hold turns waiting for the database."""
    directory = spool_dir()
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"*{SUFFIX}") if p.stat().st_size)


def replay_spool(save: Callable[[FinishedTurn], bool]) -> ReplayResult:
    """Replay every spool file with `save`, which returns whether it wrote the turn (False:
    already saved) and raises when the database fails. Blocking: call from a worker thread."""
    result = ReplayResult()
    for path in pending_files():
        result += _replay_file(path, save)
    return result


def _replay_file(path: Path, save: Callable[[FinishedTurn], bool]) -> ReplayResult:
    result = ReplayResult()
    with path.open("r+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        lines = [line for line in file.read().split(b"\n") if line.strip()]
        rejected = []
        for number, line in enumerate(lines):
            try:
                turn = FinishedTurn(**json.loads(line))
            except (ValueError, TypeError):
                logger.error("Spool %s: line %d is not a turn; set aside", path, number + 1)
                rejected.append(line)
                result.unreadable += 1
                continue
            try:
                written = save(turn)
            except Exception:
                logger.warning(
                    "Replaying spooled turn %s failed; the spool keeps it",
                    turn.request_id,
                    exc_info=True,
                )
                result.remaining = len(lines) - number
                return result  # keep the whole file: replaying it again writes nothing twice
            if written:
                result.written += 1
            else:
                result.already_saved += 1
        if rejected:
            with path.with_suffix(".rejected").open("ab") as aside:
                aside.write(b"\n".join(rejected) + b"\n")
                aside.flush()
                os.fsync(aside.fileno())
        file.truncate(0)
        file.flush()
        os.fsync(file.fileno())
    if result.written:
        logger.info("Replayed %d spooled turn(s) from %s", result.written, path)
    return result
