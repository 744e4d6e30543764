"""The engines behind the seam, one module each, imported only when used.

Looking a directory's format up here imports no engine library, so the slim runtime never
imports torch and a missing engine library is an error only when that engine is asked for.
"""

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from ..seam import FEATURES, Engine, ModelLoadError
from ..vocab import load_tokenizer


@dataclass(frozen=True)
class EngineKind:
    name: str
    module: str  # under kogpt2.model.engines
    libraries: tuple[str, ...]  # what it needs to serve: their versions key a prepared copy
    marker_files: tuple[str, ...]  # a directory in its own format has one of these
    weight_formats: tuple[str, ...]  # what prepare() can write; the first is the default
    # What it implements of seam.FEATURES: known without loading, so a request asking for
    # another is refused before it queues. The engine's own `features` is this set.
    features: frozenset[str] = frozenset()
    # Rows that decode together by default (load's max_rows sets it); more than 1: concurrent
    # requests share the engine's steps, and the server lets that many in at once.
    max_rows: int = 1

    def installed(self) -> bool:
        return all(importlib.util.find_spec(lib) is not None for lib in self.libraries)

    def versions(self) -> dict[str, str]:
        return {lib: importlib.metadata.version(lib) for lib in self.libraries}

    def holds(self, path: Path) -> bool:
        return any((path / name).is_file() for name in self.marker_files)

    def module_(self):
        try:
            return importlib.import_module(f"{__name__}.{self.module}")
        except ImportError as exc:
            raise ModelLoadError(
                f"the {self.name} engine can't run here: {exc} (install requirements.txt, "
                "or requirements-slim.txt for a prepared model)"
            ) from exc


TRANSFORMERS = EngineKind(
    "transformers", "transformers", ("torch", "transformers"),
    ("model.safetensors", "pytorch_model.bin"), ("float32",), FEATURES,
)
CTRANSLATE2 = EngineKind(
    "ctranslate2", "ctranslate2", ("ctranslate2",), ("model.bin",), ("int8", "float32"),
    # Its C++ loop has no hook for a logit's own bias or OpenAI's penalties. Greedy requests
    # that wait together share a generate_batch, 8 rows at most (each returns 200 KB of logits
    # a step when they are needed).
    FEATURES - {"logit_bias", "presence_penalty", "frequency_penalty"}, max_rows=8,
)
OPENVINO = EngineKind(
    "openvino", "openvino", ("openvino",), ("openvino_model.xml",), ("int8", "float32"),
    # Continuous batching, as many rows as a /v1 batch's prompts (KOGPT2_MAX_BATCH_PROMPTS), so
    # one batch decodes in one pass: 20 prompts took 3.2x one prompt's time at 20 rows, 4.4x at
    # 16 (docs/operations.md, "Many at once").
    FEATURES, max_rows=20,
)
ENGINES = {kind.name: kind for kind in (OPENVINO, CTRANSLATE2, TRANSFORMERS)}
# `auto` serves a transformers model with the first of these that is installed, prepared once:
# OpenVINO int8 is the fastest on x86 CPUs; CTranslate2 is where OpenVINO has no wheel (arm64
# Lambda images).
PREFERRED = [OPENVINO, CTRANSLATE2]


def kind_of(path: Path) -> EngineKind | None:
    """The engine whose own format `path` holds; transformers weights win over the rest."""
    if TRANSFORMERS.holds(path) and (path / "config.json").is_file():
        return TRANSFORMERS
    return next((kind for kind in ENGINES.values() if kind.holds(path)), None)


def load(kind: EngineKind, model_dir: Path, *, threads: int, compute_type: str,
         tokenizer: Tokenizer | None = None, max_rows: int | None = None) -> Engine:
    """Load `kind` from `model_dir`; `tokenizer`, the caller's copy of the model's own, spares
    the engine reading it again (it needs the special tokens' ids). `max_rows` caps the rows of
    an engine that batches (None: kind.max_rows)."""
    if tokenizer is None:
        tokenizer = load_tokenizer(model_dir)
    options = {"max_rows": max_rows or kind.max_rows} if kind.max_rows > 1 else {}
    return kind.module_().load(model_dir, threads=threads, compute_type=compute_type,
                               tokenizer=tokenizer, **options)


def default_rows(name: str, model: str | None = None) -> int:
    """The rows engine `name` decodes together by default; for `auto`, the engine of `model`
    when it is a directory in an engine's own format, else the one auto prepares here."""
    kind = ENGINES.get(name)
    if kind is None and model is not None and Path(model).is_dir():
        own = kind_of(Path(model))
        kind = own if own is not TRANSFORMERS else None
    kind = kind or next((k for k in PREFERRED if k.installed()), TRANSFORMERS)
    return kind.max_rows


def prepare(kind: EngineKind, source_dir: Path, out_dir: Path, *, weight_format: str,
            progress) -> None:
    kind.module_().prepare(source_dir, out_dir, weight_format=weight_format, progress=progress)
