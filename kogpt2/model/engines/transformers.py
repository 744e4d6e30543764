"""The reference engine: transformers' GPT2LMHeadModel on torch, as the original handler ran it."""

import threading
from pathlib import Path

import torch
from transformers import GPT2LMHeadModel, StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging as transformers_logging

from ..params import GenerationParams
from ..seam import ModelLoadError, Watch, finish, short_reason
from ..vocab import SPECIAL_TOKENS_MAP, eos_id

NAME = "transformers"


class _Steps(StoppingCriteria):
    """Tells the watch about each step (the first row's new token) and stops when it says so."""

    def __init__(self, watch: Watch, prompt_length: int):
        self.watch, self.prompt_length = watch, prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        stop = self.watch.step(int(input_ids[0, -1]))
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    name = NAME
    compute_type = "float32"

    def __init__(self, model, eos: int, pad: int):
        self.model, self.eos_id, self.pad_id = model, eos, pad
        # torch's RNG is global: a seeded sampling run must not interleave with another.
        self._lock = threading.Lock()

    def generate(self, prompt_ids, *, max_new_tokens, params: GenerationParams, seed, watch):
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        options = dict(
            max_new_tokens=max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            num_return_sequences=params.num_return_sequences,
            do_sample=params.do_sample,
            use_cache=True,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            bos_token_id=self.eos_id,
        )
        if params.do_sample:
            options.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        steps = _Steps(watch, len(prompt_ids))
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                stopping_criteria=StoppingCriteriaList([steps]),
                **options,
            )
        new_rows = output[:, len(prompt_ids):].tolist()
        return [finish(row, self.eos_id, max_new_tokens, watch) for row in new_rows]


def is_own_format(path: Path) -> bool:
    return (path / "config.json").is_file() and any(
        (path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")
    )


def load(model_dir: Path, *, threads: int, compute_type: str, tokenizer) -> TransformersEngine:
    if compute_type not in ("default", "float32"):
        raise ModelLoadError(
            f"the transformers engine computes in float32 only, not {compute_type!r}"
        )
    torch.set_num_threads(threads)
    transformers_logging.disable_progress_bar()  # a server's log is no terminal
    try:
        model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc
    model.eval()
    pad = tokenizer.token_to_id(SPECIAL_TOKENS_MAP["pad_token"])
    return TransformersEngine(model, eos_id(tokenizer), pad)
