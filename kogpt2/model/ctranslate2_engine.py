"""The fast CPU engine: a CTranslate2 model (int8 by default) with `tokenizers` for text.

It imports neither torch nor transformers, so a slim runtime without them serves it. Make a
directory for it with `python scripts/convert.py SRC OUT --quantization int8`.
"""

import json
import threading
import time
import weakref
from pathlib import Path

import ctranslate2
from tokenizers import Tokenizer

from .engine import ModelLoadError, finish, short_reason
from .params import GenerationParams

EOS_TOKEN = "</s>"  # KoGPT2 was trained with </s> as both BOS and EOS
# ctranslate2.set_random_seed is process-wide: a seeded run must not interleave with another.
GENERATION_LOCK = threading.Lock()


def read_max_positions(model_dir: Path) -> int:
    # CTranslate2's own config.json doesn't keep GPT-2's n_positions; convert.py writes it here.
    path = model_dir / "tokenizer_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not read {str(path)!r}: {short_reason(exc)}") from exc
    if not isinstance(value, int) or value < 2:
        raise ModelLoadError(
            f"{str(path)!r} has no usable model_max_length (the model's positions); "
            "convert the model with `python scripts/convert.py SRC OUT --quantization int8`"
        )
    return value


class CTranslate2Engine:
    name = "ctranslate2"

    def __init__(self, model_dir: Path, tokenizer: Tokenizer, max_positions: int, *,
                 threads: int, compute_type: str):
        self.model_dir = model_dir
        self.tokenizer = tokenizer
        self.max_positions = max_positions
        self.eos_id = tokenizer.token_to_id(EOS_TOKEN)
        self._options = dict(device="cpu", compute_type=compute_type, intra_threads=threads)
        # The one live ctranslate2.Generator. It is dropped while the interpreter still runs:
        # one that ran a callback aborts the process if it is left to the interpreter's exit.
        self._live = [self._open()]
        weakref.finalize(self, self._live.clear)
        self._sampled = False  # whether the live generator's random stream has been used
        self.compute_type = self._live[0].compute_type

    def _open(self):
        return ctranslate2.Generator(str(self.model_dir), **self._options)

    @classmethod
    def load(cls, model_dir: str, threads: int, compute_type: str = "default"):
        path = Path(model_dir)
        max_positions = read_max_positions(path)
        try:
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            engine = cls(path, tokenizer, max_positions, threads=threads,
                         compute_type=compute_type)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"could not load {model_dir!r}: {short_reason(exc)}") from exc
        if engine.eos_id is None:
            raise ModelLoadError(f"the tokenizer of {model_dir!r} has no {EOS_TOKEN} token")
        return engine

    def _prepare_sampling(self, seed: int | None) -> None:
        # set_random_seed only seeds a generator's worker thread the first time it samples
        # (its random engine is thread-local), so a used generator is swapped for a fresh
        # one (~0.1 s for the full-size int8 model) to make the seed reproduce the text.
        if seed is not None:
            ctranslate2.set_random_seed(seed)
            if self._sampled:
                self._live.clear()  # free the old one first: one model in memory at a time
        self._sampled = True

    def _generator(self):
        if not self._live:  # a swap whose open failed is retried here
            self._live.append(self._open())
        return self._live[0]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def generate(self, prompt_ids, *, max_new_tokens, params: GenerationParams, seed, deadline):
        prompt = [self.tokenizer.id_to_token(i) for i in prompt_ids]
        rows = params.num_return_sequences if params.do_sample else 1
        deadline_hit = False

        def past_deadline(step) -> bool:  # True ends that row's generation
            nonlocal deadline_hit
            deadline_hit = deadline_hit or time.monotonic() >= deadline
            return deadline_hit

        options = dict(
            max_length=max_new_tokens,  # new tokens only, as the prompt isn't in the result
            repetition_penalty=params.repetition_penalty,
            include_prompt_in_result=False,  # forwards the prompt at once
            end_token=EOS_TOKEN,
            return_end_token=True,
        )
        if deadline is not None:
            options.update(callback=past_deadline)
        if params.do_sample:
            options.update(
                sampling_topk=params.top_k,  # 0 samples from the whole vocabulary, as top_k=0 does
                sampling_topp=params.top_p,
                sampling_temperature=params.temperature,
            )
        with GENERATION_LOCK:
            if params.do_sample:
                self._prepare_sampling(seed)
            results = self._generator().generate_batch([prompt] * rows, **options)
        return [
            finish(result.sequences_ids[0], self.eos_id, max_new_tokens, deadline_hit)
            for result in results
        ]
