"""The reference engine: transformers' GPT2LMHeadModel on torch, as the original handler ran it."""

import threading
import time

import torch
from transformers import (
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.utils import logging as transformers_logging

from .engine import ModelLoadError, finish, short_reason
from .params import GenerationParams

# KoGPT2 was trained with </s> as both BOS and EOS; AutoTokenizer would add <|endoftext|>.
KOGPT2_SPECIAL_TOKENS = dict(
    bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>"
)


class _Deadline(StoppingCriteria):
    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.hit = False

    def __call__(self, input_ids, scores, **kwargs):
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.hit = True
        rows = input_ids.shape[0]
        return torch.full((rows,), self.hit, dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    name = "transformers"
    compute_type = "float32"

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.max_positions = model.config.n_positions
        self.eos_id = tokenizer.eos_token_id
        # torch's RNG is global: a seeded sampling run must not interleave with another.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: str, threads: int) -> "TransformersEngine":
        torch.set_num_threads(threads)
        transformers_logging.disable_progress_bar()  # a server's log is no terminal
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir, **KOGPT2_SPECIAL_TOKENS)
            model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load {model_dir!r}: {short_reason(exc)}") from exc
        model.eval()
        return cls(model, tokenizer)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def generate(self, prompt_ids, *, max_new_tokens, params: GenerationParams, seed, deadline):
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        options = dict(
            max_new_tokens=max_new_tokens,
            repetition_penalty=params.repetition_penalty,
            num_return_sequences=params.num_return_sequences,
            do_sample=params.do_sample,
            use_cache=True,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        if params.do_sample:
            options.update(temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        stop = _Deadline(deadline)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                stopping_criteria=StoppingCriteriaList([stop]),
                **options,
            )
        new_rows = output[:, len(prompt_ids):].tolist()
        return [finish(row, self.eos_id, max_new_tokens, stop.hit) for row in new_rows]

