"""vLLM's tokenizer endpoints at the service root: GET /tokenizer_info, POST /tokenize,
POST /detokenize. lm-evaluation-harness's `local-completions` finds them from `base_url` and
then tokenizes as the server does, instead of fetching a tokenizer from the hub."""

from .. import service
from ..state import get_generator
from .protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)
from .serving_models import check_model


def tokenizer_info() -> dict:
    generator = get_generator()
    special = generator.special_tokens()
    return TokenizerInfo(tokenizer_class="PreTrainedTokenizerFast",
                         model_max_length=generator.vocabulary().max_positions,
                         **special).model_dump()


def tokenize() -> dict:
    asked = service.validate(TokenizeRequest, service.json_body())
    check_model(asked.model)
    vocabulary = get_generator().vocabulary()
    ids = vocabulary.tokenize(asked.prompt, add_special_tokens=asked.add_special_tokens)
    strings = vocabulary.token_strings(ids) if asked.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=vocabulary.max_positions, tokens=ids,
                            token_strs=strings).model_dump()


def detokenize() -> dict:
    asked = service.validate(DetokenizeRequest, service.json_body())
    check_model(asked.model)
    return DetokenizeResponse(prompt=get_generator().detokenize(asked.tokens)).model_dump()
