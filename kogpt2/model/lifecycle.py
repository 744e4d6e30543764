"""The model's load, once per process: its state, its attempts and their retries.

Loading a model that is ready to serve takes the calling thread a moment (other callers wait
for it); downloading it or preparing an engine's copy runs in the background while callers are
told how far it is. A failed load is tried again after a delay that doubles from `retry_s` up
to `retry_max_s`: by the next caller once it is due, and by a thread of its own once `start()`
was called (a server calls it as it starts: the model becomes ready with no request). What an
attempt does (loading, downloading, preparing, setting a damaged copy aside) is loading.py's.

The state (not loaded, loading, ready, failed) and what goes with it (the engine, the
progress, the last failure) change together under one lock, which is never held while
anything is read, downloaded, prepared or loaded: an attempt claims the state `loading`, works
outside the lock, then ends it `ready` or `failed`.
"""

import enum
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .loading import Loaded, Loader, ProgressBoard
from .origin import Origin
from .seam import Engine, ModelLoadError, ModelLoading, Progress, engine_failure, short_reason
from .tokens import Vocabulary, vocabulary_of

log = logging.getLogger(__name__)
# The loader thread looks again this often: no faster than this even when retry_s is 0, and a
# lifecycle nothing holds any more is let go within it.
BACKGROUND_MIN_WAIT_S = 1.0
# Past this many doublings any delay is at its cap (2 ** 1024 seconds is no float at all).
MOST_DOUBLINGS = 64


class State(enum.Enum):
    NOT_LOADED = "not_loaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Failure:
    """The last load's failure: its reason (for the operator's log: it may hold paths), and
    when the next attempt is due (time.monotonic())."""

    reason: str
    next_attempt_at: float

    def error(self) -> ModelLoadError:
        """A new exception each time it is raised: raising the same one again and again would
        grow its traceback by the frames of every raise."""
        return ModelLoadError(self.reason)


class Retries:
    """Failed loads since the last success, and when the next attempt is due: `first_s` after
    the first failure, twice as long after each further one, up to `most_s`."""

    def __init__(self, first_s: float, most_s: float):
        self.first_s, self.most_s = first_s, max(most_s, first_s)
        self.count = 0
        self.last: Failure | None = None

    def failed(self, reason: str) -> float:
        """Count a failure; the seconds until the next attempt is due."""
        self.count += 1
        delay = min(self.most_s, self.first_s * 2.0 ** min(self.count - 1, MOST_DOUBLINGS))
        self.last = Failure(reason, time.monotonic() + delay)
        return delay

    def succeeded(self) -> None:
        self.count, self.last = 0, None

    def raise_until_due(self) -> None:
        last = self.last
        if last is not None and time.monotonic() < last.next_attempt_at:
            raise last.error()

    def wait_s(self) -> float | None:
        """Seconds until the next attempt is due (0: now); None after a success."""
        last = self.last
        return None if last is None else max(0.0, last.next_attempt_at - time.monotonic())


class Lifecycle:
    """The load of `origin`'s model; safe to share between threads. `engine_options` are
    engines.load's settings (threads, compute_type, max_rows, ...), passed as they are."""

    def __init__(self, origin: Origin, engine_options: dict, *, threads_reason: str = "",
                 retry_s: float = 5.0, retry_max_s: float = 300.0):
        self.origin = origin
        self.loader = Loader(origin, engine_options)
        self.threads = engine_options.get("threads", 0)
        self.threads_reason = threads_reason
        self._lock = threading.Condition()  # guards what follows; notified when the state ends
        self._state = State.NOT_LOADED
        self._engine: Engine | None = None
        self._vocabulary: Vocabulary | None = None
        self._board = ProgressBoard()  # told while loading
        self._behind = False  # the attempt under way runs behind: callers are not made to wait
        self._retries = Retries(retry_s, retry_max_s)
        self.retrier = Retrier(self)
        self._loads: list[dict[str, float]] = []
        self.load_count = 0

    # --- what callers may ask at any time, without waiting or loading --------------------------

    @property
    def state(self) -> State:
        """The load's state. A loaded engine that says it can't serve now (seam.engine_failure)
        counts as failed: this is where the engine's health is asked."""
        with self._lock:
            state, engine = self._state, self._engine
        if state is State.READY and engine_failure(engine) is not None:
            return State.FAILED
        return state

    def ready(self) -> bool:
        """Whether requests may come now (GET /ready asks). Until then, the probe that gates
        traffic keeps start()'s thread at work: one that ended, for whatever reason, starts
        again."""
        if self.state is State.READY:
            return True
        if self._state is not State.READY:
            self.retrier.keep_alive()
        return False

    @property
    def engine(self) -> Engine | None:
        return self._engine

    @property
    def progress(self) -> Progress | None:
        return self._board.now

    @property
    def known_vocabulary(self) -> Vocabulary | None:
        """The vocabulary if it has been read; never reads it."""
        return self._vocabulary

    @property
    def last_error(self) -> str | None:
        """Why the last load failed, or why the loaded engine can't serve now; for the
        operator's log (it may hold paths)."""
        failure, engine = self._retries.last, self._engine
        if failure is not None:
            return failure.reason
        return engine_failure(engine) if engine is not None else None

    @property
    def retry_in_s(self) -> float | None:
        """Seconds until a failed load is tried again (0: the next caller tries it); None
        unless the last load failed."""
        return None if self._engine is not None else self._retries.wait_s()

    def load_history(self) -> list[dict[str, float]]:
        """Each finished load's seconds by stage: download and prepare (when they ran), load."""
        return list(self._loads)

    # --- the vocabulary, which a request's checks need before the model ------------------------

    def vocabulary(self) -> Vocabulary:
        """The tokenizer and positions: from the model's directory if it is on this machine,
        else once the model is loaded (a download starts the load)."""
        if self._vocabulary is None:
            self._retries.raise_until_due()
            source = self.guarded(self.origin.source_here)
            if source is None:
                self.load()  # raises ModelLoading while it downloads
            else:
                vocabulary = self.guarded(lambda: vocabulary_of(source))
                with self._lock:
                    self._vocabulary = self._vocabulary or vocabulary
        return self._vocabulary

    def guarded(self, work: Callable):
        """Run `work`, which reads the model's files; a failure (any exception is a load error
        here) is remembered as a failed load and raised as ModelLoadError."""
        try:
            return work()
        except Exception as exc:  # a corrupt file can fail anywhere inside a library
            raise_failure(self._failed(exc, attempt=False), exc)

    # --- load ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Load in the background now, and try a failed load again (after its delay) until the
        model is ready, with no caller needed. Returns at once; calling it again does nothing."""
        self.retrier.start()

    def load(self, *, wait: bool = False) -> Engine:
        """The engine, loaded once. Raises ModelLoading while a download or preparation runs
        in the background (`wait=True` waits for it instead), ModelLoadError if it failed and
        its next attempt isn't due yet, or if this attempt fails."""
        if self._engine is not None:
            return self._engine
        with self._lock:
            waited = False
            while self._state is State.LOADING and (wait or not self._behind):
                self._lock.wait()
                waited = True
            if self._state is State.READY:
                return self._engine
            if self._state is State.LOADING:
                raise ModelLoading(self._board.now)
            if waited:  # for an attempt that failed: its failure is this caller's too
                raise self._retries.last.error()
            self._retries.raise_until_due()
            self._state, self._behind = State.LOADING, False
            self._board.tell(Progress("starting", 0, "starting"))
        engine = self._attempt()
        if engine is not None:
            return engine
        if not wait:
            raise ModelLoading(self._board.now or Progress("starting", 0, "starting"))
        with self._lock:
            while self._state is State.LOADING:
                self._lock.wait()
            if self._state is State.READY:
                return self._engine
            raise self._retries.last.error()

    def _attempt(self) -> Engine | None:
        """One attempt, the state claimed `loading`: a model that is ready to serve is loaded
        now; else its download and preparation run behind (None)."""
        try:
            outcome = self.loader.attempt(self._vocabulary, self._board)
        except BaseException as exc:
            error = self._failed(exc)
            if not isinstance(exc, Exception):
                raise  # an interrupt or an exit: the state is failed, not stuck loading
            raise_failure(error, exc)
        if isinstance(outcome, Loaded):
            return self._loaded(outcome)
        with self._lock:
            self._behind = True
            self._lock.notify_all()  # waiters that needn't wait for what runs behind
        threading.Thread(target=self._load_behind, args=(outcome,), name="kogpt2-prepare",
                         daemon=True).start()
        return None

    def _load_behind(self, work: Callable[[], Loaded]) -> None:
        try:
            self._loaded(work())
        except BaseException as exc:
            self._failed(exc)
            if not isinstance(exc, Exception):
                raise

    def _loaded(self, loaded: Loaded) -> Engine:
        with self._lock:
            self._vocabulary = loaded.vocabulary
            self.load_count += 1
            log.info("the model is ready: %s engine, %d threads (%s), attempt %d",
                     loaded.engine.name, self.threads, self.threads_reason,
                     self._retries.count + 1)
            self._loads.append(loaded.seconds)
            self._engine = loaded.engine
            self._retries.succeeded()
            self._end(State.READY)
        return loaded.engine

    def _failed(self, exc: BaseException, *, attempt: bool = True) -> ModelLoadError:
        """Remember a failed load (an attempt's, or a read of the model's files outside one),
        say so in one log line, and return the error to raise."""
        error = exc if isinstance(exc, ModelLoadError) else ModelLoadError(
            f"could not load {self.origin.model!r}: {short_reason(exc)}")
        with self._lock:  # the line is written before anyone sees the state it tells
            delay = self._retries.failed(str(error))
            then = "by itself" if self.retrier.started else "by the next caller"
            log.error("the model could not be loaded (attempt %d): %s; it is tried again %s in "
                      "%s s", self._retries.count, error, then, f"{delay:g}")
            # A read beside an attempt leaves its end to it; one after a load changes nothing.
            if attempt or self._state in (State.NOT_LOADED, State.FAILED):
                self._end(State.FAILED)
        return error

    def _end(self, state: State) -> None:  # the lock held
        self._state, self._behind = state, False
        self._board.tell(None)
        self._lock.notify_all()


class Retrier:
    """start()'s thread: it attempts the load whenever one is due, until the model is ready
    (keep_loading). It holds the lifecycle only while it works, and ends once nothing else
    holds it."""

    def __init__(self, lifecycle: Lifecycle):
        self._lifecycle = weakref.ref(lifecycle)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.started = False  # failed loads are tried again in the background

    def start(self) -> None:
        with self._lock:
            if not self.started:
                self.started = True
                self._run()

    def keep_alive(self) -> None:
        """Start the thread again if start() was called and it has ended (the model not ready)."""
        with self._lock:
            if self.started and not self._thread.is_alive():
                log.warning("the background load had stopped before the model was ready; it "
                            "starts again")
                self._run()

    def _run(self) -> None:  # the lock held
        self._thread = threading.Thread(target=keep_loading, args=(self._lifecycle,),
                                        name="kogpt2-loader", daemon=True)
        self._thread.start()


def raise_failure(error: ModelLoadError, exc: BaseException):
    if error is exc:
        raise error
    raise error from exc


def keep_loading(ref: weakref.ref) -> None:
    """start()'s thread: attempt the load whenever one is due, until it succeeds. It holds the
    lifecycle only while it works, and ends once nothing else holds it."""
    while True:
        lifecycle = ref()
        if lifecycle is None or lifecycle.engine is not None:
            return
        wait = lifecycle.retry_in_s or 0.0
        if wait == 0:
            try:
                lifecycle.load(wait=True)
            except ModelLoadError:
                pass  # logged, with when it is tried again
            except Exception:  # whatever it was, the model is still to be loaded
                log.exception("the background load failed; it is tried again")
            wait = BACKGROUND_MIN_WAIT_S
        del lifecycle
        time.sleep(min(wait, BACKGROUND_MIN_WAIT_S))
