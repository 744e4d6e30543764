"""Bounded generations per process: a few at once, a short queue, then 429 instead of a pile-up.

Two cores can't run more generations faster by starting more of them: extra requests would only
wait, each holding a server thread, until every one of them missed API Gateway's 29 s. So a
request waits at most `queue_timeout_s` for a slot, at most `queue_size` requests wait at once,
and the rest are told to come back later (429 with Retry-After).
"""

import contextlib
import math
import threading
import time

from flask import current_app

from .errors import APIError

EXTENSION = "kogpt2.limit"


class Overloaded(APIError):
    def __init__(self, message: str, retry_after_s: float):
        retry_after = str(max(1, math.ceil(retry_after_s)))
        super().__init__(429, "overloaded", message, {"Retry-After": retry_after})


class ConcurrencyLimit:
    """At most `slots` holders at once; at most `queue_size` waiters, each for `timeout_s`."""

    def __init__(self, slots: int, queue_size: int, timeout_s: float):
        self.slots, self.queue_size, self.timeout_s = slots, queue_size, timeout_s
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.waiting = 0
        self.running = 0

    def describe(self) -> dict:
        return {
            "max_concurrency": self.slots,
            "queue_size": self.queue_size,
            "queue_timeout_s": self.timeout_s,
            "running": self.running,
            "waiting": self.waiting,
        }

    @contextlib.contextmanager
    def slot(self, deadline: float):
        """Hold a slot for the `with` block, waiting until `deadline` or timeout_s at most."""
        if not self._slots.acquire(blocking=False):
            self._wait(deadline)
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._slots.release()

    def _wait(self, deadline: float) -> None:
        with self._lock:
            if self.waiting >= self.queue_size:
                raise Overloaded(
                    f"The server is busy: {self.slots} generation(s) running and "
                    f"{self.waiting} waiting. Try again shortly.",
                    self.timeout_s,
                )
            self.waiting += 1
        try:
            wait_s = max(0.0, min(self.timeout_s, deadline - time.monotonic()))
            if not self._slots.acquire(timeout=wait_s):
                raise Overloaded(
                    f"The server is busy: no generation slot freed within {wait_s:.1f} s. "
                    "Try again shortly.",
                    self.timeout_s,
                )
        finally:
            with self._lock:
                self.waiting -= 1


def init_app(app, settings) -> None:
    app.extensions[EXTENSION] = ConcurrencyLimit(
        settings.max_concurrency, settings.queue_size, settings.queue_timeout_s
    )


def get_limit() -> ConcurrencyLimit:
    return current_app.extensions[EXTENSION]
