"""Model layer: loads KoGPT2 and generates text. Knows torch/transformers, nothing about the web."""

from .engine import ModelLoadError, available_cpus
from .generator import Generator, InvalidInput
from .params import (
    DEFAULT_TOTAL_TOKENS,
    MAX_PROMPT_CHARS,
    GenerationParams,
    GenerationResult,
    Sequence,
)

__all__ = [
    "DEFAULT_TOTAL_TOKENS",
    "MAX_PROMPT_CHARS",
    "GenerationParams",
    "GenerationResult",
    "Generator",
    "InvalidInput",
    "ModelLoadError",
    "Sequence",
    "available_cpus",
]
