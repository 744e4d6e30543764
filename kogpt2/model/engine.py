"""The seam between the generator and an inference engine: token ids in, token ids out."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .params import FinishReason, GenerationParams


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says why in words a person can act on."""


@dataclass(frozen=True)
class EngineOutput:
    token_ids: list[int]  # new tokens only, without the end-of-sequence token
    finish_reason: FinishReason


class Engine(Protocol):
    name: str
    compute_type: str
    max_positions: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def generate(
        self,
        prompt_ids: list[int],
        *,
        max_new_tokens: int,
        params: GenerationParams,
        seed: int | None,
        deadline: float | None,
    ) -> list[EngineOutput]: ...


def finish(new_ids: list[int], eos_id: int, max_new_tokens: int, deadline_hit: bool):
    """Cut one sequence at its first EOS and say why it ended."""
    if eos_id in new_ids:
        return EngineOutput(new_ids[: new_ids.index(eos_id)], "eos")
    if deadline_hit and len(new_ids) < max_new_tokens:
        return EngineOutput(new_ids, "time")
    return EngineOutput(new_ids, "length")


def is_local(source: str) -> bool:
    return Path(source).expanduser().exists() or source.startswith(("/", "./", "../", "~"))


def check_local_dir(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"model directory {source!r} does not exist")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"model directory {source!r} has no config.json")
    if not (path / "tokenizer.json").is_file():
        raise ModelLoadError(f"model directory {source!r} has no tokenizer.json")
    return path


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
CONVERT_HINT = "python scripts/convert.py SRC OUT --quantization int8"


def is_ctranslate2_dir(path: Path) -> bool:
    """A directory written by CTranslate2's converter: model.bin, no transformers weights."""
    return (path / "model.bin").is_file() and not any(
        (path / name).is_file() for name in TRANSFORMERS_WEIGHTS
    )


def load_engine(source: str, engine: str, threads: int, compute_type: str = "default") -> Engine:
    """Load `source` (hub id or local directory) with the named engine.

    `auto` picks ctranslate2 for a converted directory and transformers for any other.
    """
    if engine not in ("auto", "transformers", "ctranslate2"):
        raise ModelLoadError(f"unknown engine {engine!r}")
    if engine == "ctranslate2" and not is_local(source):
        raise ModelLoadError(
            f"{source!r} is a hub id; the ctranslate2 engine serves a converted directory: "
            f"run `{CONVERT_HINT}` and set KOGPT2_MODEL=OUT"
        )
    if is_local(source):
        path = check_local_dir(source)
    else:
        from .hub import snapshot

        path = check_local_dir(snapshot(source))
    converted = is_ctranslate2_dir(path)
    if engine == "auto":
        engine = "ctranslate2" if converted else "transformers"
    if engine == "ctranslate2":
        if not converted:
            raise ModelLoadError(
                f"{source!r} is not a CTranslate2 model directory (it has no model.bin, or has "
                f"transformers weights): run `{CONVERT_HINT}` and set KOGPT2_MODEL=OUT"
            )
        from .ctranslate2_engine import CTranslate2Engine

        return CTranslate2Engine.load(str(path), threads, compute_type)
    if converted:
        raise ModelLoadError(
            f"{source!r} is a CTranslate2 model directory; the transformers engine needs the "
            "original model (config.json + model.safetensors): set KOGPT2_ENGINE=ctranslate2 "
            "or auto"
        )
    if compute_type not in ("default", "float32"):
        raise ModelLoadError(
            f"the transformers engine computes in float32 only, not {compute_type!r}"
        )
    from .transformers_engine import TransformersEngine

    return TransformersEngine.load(str(path), threads)
