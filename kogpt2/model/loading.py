"""What one attempt at loading the model does: load a directory that is ready to serve, or
first download the model and prepare an engine's copy of it. A prepared copy that fails to
load is set aside and prepared again, once per process per copy. When an attempt runs, and
what its outcome makes of the model's state, is lifecycle.py's."""

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import engines, hub, prepare
from .origin import Origin, Plan
from .seam import Engine, Progress, short_reason
from .source import Source, local_source
from .tokens import Vocabulary, vocabulary_of

log = logging.getLogger(__name__)


class ProgressBoard:
    """Where an attempt tells how far it is: its last Progress (`now`, None between attempts),
    which anyone may read at any time."""

    def __init__(self):
        self.now: Progress | None = None

    def tell(self, progress: Progress | None) -> None:
        self.now = progress

    def stage(self, start: int, end: int, step: str) -> Callable[..., None]:
        """report(stage in words, fraction of it done, substep) for a stage that spans `start`
        to `end` percent of the whole; the percent never goes back."""

        def report(stage: str, fraction: float | None = None, substep: str | None = None) -> None:
            previous = self.now
            percent = previous.percent if previous else start
            if fraction is not None:
                percent = max(percent, round(start + (end - start) * fraction))
            if previous is None or previous.stage != stage:
                log.info("preparing the model: %s", stage)
            self.now = Progress(stage, min(percent, 99), substep or step)

        return report


@dataclass(frozen=True)
class Loaded:
    """A load that succeeded: the engine, the vocabulary it was given, and the seconds of its
    stages (download and prepare when they ran, load)."""

    engine: Engine
    vocabulary: Vocabulary
    seconds: dict[str, float]


class Loader:
    """Loads `origin`'s model for an engine; `engine_options` are engines.load's settings."""

    def __init__(self, origin: Origin, engine_options: dict):
        self.origin = origin
        self.engine_options = engine_options
        self._set_aside: set[str] = set()  # cache entries this process set aside

    def attempt(self, vocabulary: Vocabulary | None,
                board: ProgressBoard) -> "Loaded | Callable[[], Loaded]":
        """Load the model now if it is ready to serve (Loaded); else what is still to do, to
        run behind (download, prepare, load), its first step told on the `board`."""
        plan, damaged = self.origin.plan(), None
        if plan.ready_dir is not None:
            board.tell(Progress("loading the model", 95, "loading"))
            try:
                return self.load_dir(plan.kind, plan.ready_dir, plan.source, vocabulary,
                                     prepared=plan.prepared)
            except Exception as exc:
                if not (plan.prepared and self.sets_aside(plan.ready_dir)):
                    raise
                # Set aside behind: another process may hold the entry's lock a while.
                damaged = (plan.ready_dir, exc, marker_id(plan.ready_dir))
                plan = replace(plan, ready_dir=None, prepared=False)
        # What runs behind first, said before it starts: callers see one story.
        if plan.source is None:
            board.tell(Progress("downloading the model", 0, "downloading"))
        else:
            board.tell(Progress(f"preparing for the {plan.kind.name} engine", 0, "converting"))
        return functools.partial(self._behind, plan, damaged, vocabulary, board)

    def _behind(self, plan: Plan, damaged: tuple | None, vocabulary: Vocabulary | None,
                board: ProgressBoard) -> Loaded:
        """Set aside a `damaged` copy (its path, and why), then download and prepare what is
        missing, and load."""
        if damaged is not None:
            self.move_aside(*damaged)
        return self.prepare_and_load(plan, vocabulary, board)

    def load_dir(self, kind: engines.EngineKind, model_dir: Path, origin: Source | None,
                 vocabulary: Vocabulary | None = None, *, prepared: bool = False,
                 seconds: dict[str, float] | None = None) -> Loaded:
        """Load `model_dir` (made from `origin`); a `prepared` copy of the cache is checked
        against its seal first (a directory of the operator's is theirs to edit: its engine
        checks what it reads). A prepared copy holds its source's tokenizer: the `vocabulary`
        already read serves both."""
        started = time.monotonic()
        here = local_source(str(model_dir))
        if prepared:
            prepare.check_entry(model_dir)  # a truncated file fails here, not in the engine
        vocabulary = vocabulary or vocabulary_of(here)
        engine = engines.load(kind, model_dir, tokenizer=vocabulary.tokenizer,
                              **self.engine_options)
        self.origin.served(here, origin)
        return Loaded(engine, vocabulary, {**(seconds or {}), "load": time.monotonic() - started})

    def prepare_and_load(self, plan: Plan, vocabulary: Vocabulary | None,
                         board: ProgressBoard) -> Loaded:
        """Download what is missing and prepare the engine's copy, then load it."""
        source, start, seconds = plan.source, 0, {}
        if source is None:
            report = board.stage(0, 50, "downloading")
            report("downloading the model", 0.0)
            source = timed(seconds, "download", lambda: hub.download(
                self.origin.model, self.origin.revision, lambda done, total: report(
                    "downloading the model", done / total if total else 1.0)))
            start = 50
        if plan.kind is engines.TRANSFORMERS:
            board.stage(95, 100, "loading")("loading the model", 0.0)
            return self.load_dir(plan.kind, source.path, source, vocabulary, seconds=seconds)
        while True:  # a prepared copy that fails to load is prepared again, once
            entry = timed(seconds, "prepare", lambda: prepare.prepare(
                source, plan.kind, self.origin.weight_format, self.origin.cache_root,
                board.stage(start, 95, "converting")))
            board.stage(95, 100, "loading")("loading the model", 0.0)
            try:
                return self.load_dir(plan.kind, entry, source, vocabulary, prepared=True,
                                     seconds=seconds)
            except Exception as exc:
                if not self.sets_aside(entry):
                    raise
                self.move_aside(entry, exc, marker_id(entry))

    def sets_aside(self, entry: Path) -> bool:
        """Whether a prepared copy that failed to load is set aside and prepared again: the
        first time in this process (after that the failure stands, with its reason)."""
        if entry.name in self._set_aside:
            return False
        self._set_aside.add(entry.name)
        return True

    def move_aside(self, entry: Path, exc: Exception, marker: str | None) -> None:
        """Move the copy that failed (`marker` names it) aside, unless another process has
        replaced it meanwhile."""
        aside = prepare.set_aside(entry, marker)
        where = f"moved to {aside}" if aside else "another process replaced it meanwhile"
        log.warning("the prepared copy %s failed to load (%s): %s; preparing it again",
                    entry, short_reason(exc), where)


def timed(seconds: dict[str, float], stage: str, work):
    started = time.monotonic()
    try:
        return work()
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.monotonic() - started


def marker_id(entry: Path) -> str | None:
    return (prepare.read_marker(entry) or {}).get("id")
