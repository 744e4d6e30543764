"""What a request must be before it waits for a generation slot: plain functions of the request,
the server's cap and the model's vocabulary. Nothing here loads a model; the generator calls
them in order of cost (the request alone, the engine's features, then the tokenizer)."""

from dataclasses import dataclass

from .params import DEFAULT_TOTAL_TOKENS, MAX_PROMPT_CHARS, GenerationParams
from .seam import InvalidInput
from .tokens import Vocabulary


@dataclass(frozen=True)
class Prompt:
    """A prompt this model and server can take: its token ids and how many to add. `text` is
    what it was given as, or the decoding of the token ids it was given as, special tokens
    written out (as vLLM echoes them, and /detokenize says them)."""

    text: str
    params: GenerationParams
    ids: list[int]
    max_new_tokens: int

    @property
    def rows(self) -> int:
        return self.params.rows


def field_of(prompt: str | list[int]) -> str:
    """The request's field a prompt came in: the native API's text, or token ids."""
    return "text" if isinstance(prompt, str) else "prompt"


def check_request(prompt: str | list[int], params: GenerationParams, max_new_tokens: int) -> None:
    """What needs neither the model nor its tokenizer: a text's length, the server's cap."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInput("text is empty", "text")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InvalidInput(
                f"text is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed",
                "text",
            )
    elif not prompt:
        raise InvalidInput("prompt is an empty list of token ids", "prompt")
    if params.max_new_tokens is not None and params.max_new_tokens > max_new_tokens:
        raise InvalidInput(
            f"max_new_tokens is {params.max_new_tokens}; this server allows at most "
            f"{max_new_tokens}", "max_new_tokens",
        )


def check_tokens(prompt: str | list[int], params: GenerationParams, vocabulary: Vocabulary,
                 max_new_tokens: int) -> Prompt:
    """The prompt's ids, every id of the request inside the vocabulary, and the new tokens
    that fit the model's positions and the server's cap."""
    if isinstance(prompt, str):
        text, ids = prompt, vocabulary.tokenize(prompt)
    else:
        ids = list(prompt)
        text = vocabulary.detokenize(ids, "prompt")
    vocabulary.refuse_outside(params.stop_token_ids, "stop_token_ids")
    vocabulary.refuse_outside(params.logit_bias, "logit_bias")
    max_new = new_token_budget(len(ids), params.max_new_tokens, vocabulary.max_positions,
                               max_new_tokens, field_of(prompt))
    if params.min_new_tokens > max_new:
        raise InvalidInput(
            f"min_new_tokens ({params.min_new_tokens}) is over the {max_new} new tokens "
            "this generation makes", "min_new_tokens",
        )
    return Prompt(text, params, ids, max_new)


def new_token_budget(prompt_tokens: int, requested: int | None, positions: int,
                     max_new_tokens: int, field: str = "text") -> int:
    """The new tokens a prompt of `prompt_tokens` gets: `requested` if it fits the model's
    `positions`, else refused; by default enough to make 90 tokens with the prompt, within the
    server's `max_new_tokens`."""
    if prompt_tokens == 0:
        raise InvalidInput(f"{field} has nothing the tokenizer can read", field)
    if prompt_tokens > positions or (prompt_tokens == positions and requested != 0):
        raise InvalidInput(
            f"{field} is {prompt_tokens} tokens; the model takes at most {positions - 1} "
            f"so that one new token fits ({positions} to score it only)", field,
        )
    if requested is None:
        return max(1, min(DEFAULT_TOTAL_TOKENS - prompt_tokens, max_new_tokens))
    if prompt_tokens + requested > positions:
        raise InvalidInput(
            f"{field} ({prompt_tokens} tokens) + max_new_tokens ({requested}) is over the "
            f"model's {positions} positions; ask for at most {positions - prompt_tokens}",
            "max_new_tokens",
        )
    return requested
