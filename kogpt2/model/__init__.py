"""Model layer: checks requests, loads KoGPT2 and generates text. Knows engines, not the web."""

from .checks import Prompt
from .generator import Generator
from .params import DEFAULT_TOTAL_TOKENS, MAX_PROMPT_CHARS, GenerationParams
from .results import GenerationResult, Sequence
from .seam import (
    FEATURES,
    InvalidInput,
    ModelLoadError,
    ModelLoading,
    Progress,
    TokenLogprob,
    available_cpus,
)

__all__ = [
    "DEFAULT_TOTAL_TOKENS",
    "FEATURES",
    "MAX_PROMPT_CHARS",
    "GenerationParams",
    "GenerationResult",
    "Generator",
    "InvalidInput",
    "ModelLoadError",
    "ModelLoading",
    "Progress",
    "Prompt",
    "Sequence",
    "TokenLogprob",
    "available_cpus",
]
