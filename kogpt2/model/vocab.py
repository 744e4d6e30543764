"""KoGPT2's tokenizer facts, defined once, and the metadata file of a prepared model directory.

Only the `tokenizers` library: every engine and the slim runtime share this, without torch.
"""

import json
from pathlib import Path

from tokenizers import Tokenizer

from .seam import ModelLoadError, short_reason

# KoGPT2 was trained with </s> as both BOS and EOS; AutoTokenizer would add <|endoftext|> as a
# 51,201st token that the model lacks.
EOS_TOKEN = "</s>"
SPECIAL_TOKENS = ["<s>", "</s>", "<usr>", "<pad>", "<sys>", "<unk>", "<mask>", "<d>", "</d>"]
SPECIAL_TOKENS_MAP = {
    "bos_token": EOS_TOKEN,
    "eos_token": EOS_TOKEN,
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
METADATA_FILE = "kogpt2-model.json"


def tokenizer_config(max_positions: int) -> dict:
    """tokenizer_config.json for transformers' PreTrainedTokenizerFast with KoGPT2's tokens."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **SPECIAL_TOKENS_MAP,
        "model_max_length": max_positions,
    }


def load_tokenizer(model_dir: Path) -> Tokenizer:
    path = Path(model_dir) / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises its own exception types
        raise ModelLoadError(
            f"could not read the tokenizer {str(path)!r}: {short_reason(exc)}"
        ) from exc
    if tokenizer.token_to_id(EOS_TOKEN) is None:
        raise ModelLoadError(f"the tokenizer {str(path)!r} has no {EOS_TOKEN} token")
    return tokenizer


def eos_id(tokenizer: Tokenizer) -> int:
    return tokenizer.token_to_id(EOS_TOKEN)


def write_metadata(out_dir: Path, **fields) -> None:
    """Record where a prepared or converted directory came from (source id, revision...)."""
    text = json.dumps(fields, indent=2, ensure_ascii=False) + "\n"
    (Path(out_dir) / METADATA_FILE).write_text(text, encoding="utf-8")


def read_metadata(model_dir: Path) -> dict | None:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read {str(path)!r}: {short_reason(exc)}") from exc
    if not isinstance(value, dict):
        raise ModelLoadError(f"{str(path)!r} is not a JSON object")
    return value
