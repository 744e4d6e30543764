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


def load_engine(source: str, engine: str, threads: int) -> Engine:
    """Load `source` (hub id or local directory) with the named engine."""
    if is_local(source):
        path = check_local_dir(source)
    else:
        from .hub import snapshot

        path = check_local_dir(snapshot(source))
    if engine in ("auto", "transformers"):
        from .transformers_engine import TransformersEngine

        return TransformersEngine.load(str(path), threads)
    raise ModelLoadError(f"unknown engine {engine!r}")
