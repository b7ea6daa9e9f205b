"""Waiting for a condition, never for a guessed time: poll until it holds, or fail."""

import time
from collections.abc import Callable


def wait_for[T](predicate: Callable[[], T], timeout: float = 2.0, interval: float = 0.05) -> T:
    """Poll until predicate() returns something truthy; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s")
