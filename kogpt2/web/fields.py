"""What both APIs' protocols share: a prompt's text, the model's bounds on a knob, and the
model's licence statement."""

import unicodedata
from typing import Annotated

from annotated_types import Le
from pydantic import AfterValidator, BaseModel, Field

from ..model import MAX_PROMPT_CHARS, GenerationParams

# Line breaks and tabs are text; every other control character is refused.
TEXT_CONTROLS = "\n\r\t"


def readable(text: str) -> str:
    categories = [unicodedata.category(char) for char in text]
    if "Cs" in categories:
        raise ValueError("text contains invalid Unicode (a lone surrogate)")
    if any(cat == "Cc" and char not in TEXT_CONTROLS
           for cat, char in zip(categories, text, strict=True)):
        raise ValueError("text contains control characters")
    if not any(cat[0] in "LNPS" for cat in categories):
        raise ValueError("text has no visible characters")
    return text


PromptText = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PROMPT_CHARS, examples=["근육이 커지기 위해서는"]),
    AfterValidator(readable),
]


def bounds(name: str) -> list:
    """The constraints of a GenerationParams field, for a protocol field that means the same."""
    return GenerationParams.model_fields[name].metadata


def upper_bound(name: str) -> list:
    """Only the upper bound of a GenerationParams field (for a protocol field that takes more
    below, such as 0 meaning "off")."""
    return [m for m in bounds(name) if isinstance(m, Le)]


class LicenceStatement(BaseModel):
    work: str = Field(description="What it covers.")
    owner: str
    name: str = Field(description="The licence's short name.")
    url: str = Field(description="The licence's text.")
    source_url: str = Field(description="Where the work is published.")
    non_commercial: bool
