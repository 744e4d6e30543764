"""What the model's tokenizer does for the generator and for APIs that speak in token ids:
text to ids and back, each new token's text, the text a stream sends as tokens come, and the
refusal of ids outside the vocabulary. Only the `tokenizers` library."""

from dataclasses import dataclass

from tokenizers import Tokenizer

from . import streaming
from .params import GenerationParams
from .seam import InvalidInput
from .source import Source
from .vocab import SPECIAL_TOKENS_MAP, eos_id, load_tokenizer

# What /tokenizer_info tells (KoGPT2's BOS is its EOS).
SPECIAL_TOKEN_NAMES = ("eos_token", "bos_token", "pad_token", "unk_token")


@dataclass(frozen=True)
class Vocabulary:
    """A model's tokenizer and positions (prompt + new tokens)."""

    tokenizer: Tokenizer
    max_positions: int
    eos_id: int

    @property
    def size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def refuse_outside(self, ids, field: str) -> None:
        """InvalidInput naming `field` for the first id outside 0 .. size-1."""
        size = self.size
        bad = next((token for token in ids if not 0 <= token < size), None)
        if bad is not None:
            raise InvalidInput(
                f"{field} holds token id {bad}, outside the vocabulary (0 to {size - 1})", field
            )

    def tokenize(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def detokenize(self, ids: list[int], field: str = "tokens") -> str:
        """The text of token ids, special tokens included; ids outside the vocabulary are
        refused (InvalidInput naming `field`)."""
        self.refuse_outside(ids, field)
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each id's token as the vocabulary writes it ("▁근육이"; vLLM's token_strs)."""
        return [self.tokenizer.id_to_token(token) for token in ids]

    def continuation(self, prompt_ids: list[int], new_ids: list[int], *,
                     special: bool = False) -> str:
        """The text that `new_ids` add after the prompt, with the space between them; special
        tokens are written out only if `special` (an echoed prompt's are, generated ones not)."""
        return streaming.continuation(self.tokenizer, prompt_ids, new_ids, special=special)

    def token_pieces(self, prompt_ids: list[int], new_ids: list[int], *,
                     special: bool = False) -> list[str]:
        """Each new token's text: they join to exactly `continuation(prompt_ids, new_ids)`.
        A token that only begins a character is "" and the one completing it holds it whole."""
        return streaming.token_pieces(self.tokenizer, prompt_ids, new_ids, special=special)

    def text_stream(self, prompt_ids: list[int], params: GenerationParams
                    ) -> streaming.TextStream:
        """Turns a generation's new ids into text, token by token; the ids that end it (EOS
        unless ignored, the stop ids) are not text."""
        ends = {*params.stop_token_ids, *(() if params.ignore_eos else (self.eos_id,))}
        return streaming.TextStream(self.tokenizer, prompt_ids, end_ids=ends)


def vocabulary_of(source: Source) -> Vocabulary:
    tokenizer = load_tokenizer(source.path)
    return Vocabulary(tokenizer, source.max_positions(), eos_id(tokenizer))


def special_tokens() -> dict[str, str]:
    """eos_token, bos_token, pad_token, unk_token (KoGPT2's BOS is its EOS)."""
    return {name: SPECIAL_TOKENS_MAP[name] for name in SPECIAL_TOKEN_NAMES}
