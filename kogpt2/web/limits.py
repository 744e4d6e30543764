"""Bounded generations per process: a few at once, a short queue, then 429 instead of a pile-up.

An engine decodes at most its row cap together (settings.generation_slots: 20 on openvino, 1 on
transformers); more generations started at once would only wait, each holding a server thread,
until every one of them missed API Gateway's 29 s. So a request waits at most `queue_timeout_s`
for a slot, at most `queue_size` requests wait at once, and the rest are told to come back later
(429 with Retry-After).
"""

import collections
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
    """At most `slots` holders at once; at most `queue_size` waiters, each for `timeout_s`.

    Waiters are served in arrival order: a freed slot passes straight to the longest waiter,
    so a newcomer can't take it first (a plain semaphore lets it, starving the queue).
    """

    def __init__(self, slots: int, queue_size: int, timeout_s: float):
        self.slots, self.queue_size, self.timeout_s = slots, queue_size, timeout_s
        self._lock = threading.Lock()
        self._queue: collections.deque[threading.Event] = collections.deque()
        self.running = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

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
        self._acquire(deadline)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, deadline: float) -> None:
        with self._lock:
            if self.running < self.slots and not self._queue:
                self.running += 1
                return
            if len(self._queue) >= self.queue_size:
                raise Overloaded(
                    f"The server is busy: {self.running} generation(s) running and "
                    f"{len(self._queue)} waiting. Try again shortly.",
                    self.timeout_s,
                )
            turn = threading.Event()
            self._queue.append(turn)
        wait_s = max(0.0, min(self.timeout_s, deadline - time.monotonic()))
        if turn.wait(wait_s):
            return
        with self._lock:
            if turn.is_set():  # the slot was handed over just as the wait ran out
                return
            self._queue.remove(turn)
        raise Overloaded(
            f"The server is busy: no generation slot freed within {wait_s:.1f} s. "
            "Try again shortly.",
            self.timeout_s,
        )

    def _release(self) -> None:
        with self._lock:
            if self._queue:
                self._queue.popleft().set()  # the slot changes hands; `running` stays
            else:
                self.running -= 1


def init_app(app, settings) -> None:
    app.extensions[EXTENSION] = ConcurrencyLimit(
        settings.generation_slots, settings.queue_size, settings.queue_timeout_s
    )


def get_limit() -> ConcurrencyLimit:
    return current_app.extensions[EXTENSION]
