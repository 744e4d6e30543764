"""Whose model this is and on what terms: the one statement the page, /info, /v1/models and the
deploy show.

KoGPT2 (`skt/kogpt2-base-v2`) is SK Telecom's, under CC BY-NC-SA 4.0: attribution, no
commercial use, adaptations under the same licence. Every model this service serves reads
KoGPT2's tokenizer, and a fine-tuned KoGPT2 is an adaptation, so that statement always stands.
A model whose weights are someone else's (`KOGPT2_MODEL_LICENCE`) adds its own statement for
the weights; KoGPT2's remains, for the tokenizer.
"""

from dataclasses import asdict, dataclass

from .source import DEFAULT_MODEL_ID


@dataclass(frozen=True)
class Licence:
    work: str  # what it covers, in words
    owner: str
    name: str  # the licence's short name
    url: str  # the licence's text
    source_url: str  # where the work is published
    non_commercial: bool

    def notice(self) -> str:
        """One line: whose, which licence, where to read it."""
        terms = "; non-commercial use only" if self.non_commercial else ""
        return (f"{self.work} by {self.owner}, licensed under {self.name}{terms} "
                f"({self.url}; {self.source_url})")

    def as_dict(self) -> dict:
        return asdict(self)


KOGPT2_LICENCE = Licence(
    work=f"KoGPT2 ({DEFAULT_MODEL_ID})",
    owner="SK Telecom",
    name="CC BY-NC-SA 4.0",
    url="https://creativecommons.org/licenses/by-nc-sa/4.0/",
    source_url=f"https://huggingface.co/{DEFAULT_MODEL_ID}",
    non_commercial=True,
)
KOGPT2_TOKENIZER_LICENCE = Licence(**{**asdict(KOGPT2_LICENCE),
                                      "work": f"KoGPT2's tokenizer ({DEFAULT_MODEL_ID})"})


def model_licences(weights: Licence | None = None) -> list[Licence]:
    """The statements that apply to the model served: KoGPT2's alone, or the weights' own
    licence (`weights`, from the settings) followed by KoGPT2's for its tokenizer."""
    if weights is None:
        return [KOGPT2_LICENCE]
    return [weights, KOGPT2_TOKENIZER_LICENCE]
