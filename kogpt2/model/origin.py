"""Where the served model comes from: its source (a local directory or a hub snapshot), the
engine that serves it, what loading it takes (a Plan), its prepared copy in the cache, and its
name in answers. Everything here looks only at this machine, never loads a model and never
asks the hub (hub.download does, when a Plan says the source is still to download)."""

from dataclasses import dataclass
from pathlib import Path

from . import engines, hub, prepare
from .seam import ModelLoadError
from .source import Source, is_local, local_source, public_name


@dataclass(frozen=True)
class Plan:
    """What loading takes: the engine, the source (None: still to download), and the
    directory to load at once (None: something must be downloaded or prepared first), which
    is a prepared copy in the cache when `prepared`."""

    kind: engines.EngineKind
    source: Source | None
    ready_dir: Path | None
    prepared: bool = False


class Origin:
    """The model as configured (`model`: a hub id or a directory), and what follows from it."""

    def __init__(self, model: str, *, engine: str = "auto", weight_format: str = "int8",
                 cache_root: str | Path | None = None, model_name: str | None = None,
                 revision: str | None = None):
        self.model = model
        self.engine_name = engine
        self.weight_format = weight_format
        self.cache_root = Path(cache_root) if cache_root else prepare.default_cache_root()
        self.model_name = model_name
        self.revision = revision  # of a hub id; None: the hub's main branch
        self._source: Source | None = None  # described, or served since the last load
        self._kind: engines.EngineKind | None = None

    @property
    def public_name(self) -> str:
        return public_name(self.model_name, self.model, self.described_source())

    @property
    def public_revision(self) -> str | None:
        source = self.described_source()
        return source.revision if source is not None else self.revision

    def described_source(self) -> Source | None:
        """The source as far as it is known without failing: a local directory's, or the one
        served."""
        if self._source is None and is_local(self.model):
            try:
                self._source = local_source(self.model)
            except ModelLoadError:
                return None
        return self._source

    def source_here(self) -> Source | None:
        """The model's directory on this machine (None: a hub model not in the cache yet);
        raises ModelLoadError for a local directory that isn't a model's."""
        if is_local(self.model):
            return self.described_source() or local_source(self.model)
        return hub.cached(self.model, self.revision)

    def served(self, loaded: Source, origin: Source | None) -> None:
        """The directory a load read (`loaded`) and the source it was made from: a prepared
        copy records the hub id and commit it came from, and a snapshot is named by them."""
        self._source = loaded if loaded.hub_id or origin is None else origin

    def engine_kind(self) -> engines.EngineKind:
        """The engine that serves (or will): known without loading anything."""
        if self._kind is None:
            self._kind = self._engine_kind(self._own_kind())
        return self._kind

    def plan(self) -> Plan:
        source, own = self.source_here(), self._own_kind()
        kind = self._engine_kind(own)
        if own is kind:
            return Plan(kind, source, source.path if source else None)
        if own is not engines.TRANSFORMERS:
            raise ModelLoadError(
                f"{self.model!r} is a {own.name} model directory; the {kind.name} engine needs "
                f"a transformers model (config.json + model.safetensors): set "
                f"KOGPT2_ENGINE={own.name} or auto"
            )
        entry = source and prepare.cached(self.cache_root, source, kind, self.weight_format)
        return Plan(kind, source, entry or None, prepared=bool(entry))

    def cache_entry(self) -> Path | None:
        """The prepared copy in the cache that serves this model, if one does and it is there
        (scripts/cache.py names it "in use")."""
        plan = self.plan()
        return plan.ready_dir if plan.prepared else None

    def _own_kind(self) -> engines.EngineKind:
        """The format of the model as given: a directory's own, or a hub model's
        (transformers)."""
        if not is_local(self.model):
            return engines.TRANSFORMERS
        source = self.source_here()
        own = engines.kind_of(source.path)
        if own is None:
            raise ModelLoadError(
                f"model directory {str(source.path)!r} holds no model weights that an "
                "engine reads (model.safetensors, model.bin, openvino_model.xml)"
            )
        return own

    def _engine_kind(self, own: engines.EngineKind) -> engines.EngineKind:
        if self.engine_name != "auto":
            if self.engine_name not in engines.ENGINES:
                raise ModelLoadError(f"unknown engine {self.engine_name!r}")
            return engines.ENGINES[self.engine_name]
        if own is not engines.TRANSFORMERS:
            return own
        return next((k for k in engines.PREFERRED if k.installed()), engines.TRANSFORMERS)
