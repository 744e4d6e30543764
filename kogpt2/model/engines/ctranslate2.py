"""The small engine: a CTranslate2 model (int8 by default) that serves without torch.

It is the engine for arm64 (OpenVINO has no wheels for the Lambda base image there) and the
one with the smallest memory. `prepare()` converts a transformers directory into its format;
serving imports neither torch nor transformers.
"""

import contextlib
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import ctranslate2
import numpy

from ..params import GenerationParams
from ..seam import ModelLoadError, finish, short_reason
from ..vocab import EOS_TOKEN, SPECIAL_TOKENS_MAP, eos_id

NAME = "ctranslate2"
WEIGHT_FORMATS = {"int8": "int8", "float32": "float32", "int8_float32": "int8_float32"}
# ctranslate2.set_random_seed is process-wide: a seeded run must not interleave with another.
GENERATION_LOCK = threading.Lock()


class CTranslate2Engine:
    name = NAME

    def __init__(self, model_dir: Path, *, threads: int, compute_type: str, tokenizer):
        self.model_dir = model_dir
        self.tokenizer = tokenizer  # start tokens go in as token strings
        self.eos_id = eos_id(self.tokenizer)
        self._options = dict(device="cpu", compute_type=compute_type, intra_threads=threads)
        # The one live ctranslate2.Generator. It is dropped while the interpreter still runs:
        # one that ran a callback aborts the process if it is left to the interpreter's exit.
        self._live = [self._open()]
        weakref.finalize(self, self._live.clear)
        self.compute_type = self._live[0].compute_type
        self._fresh = True  # the live generator has not sampled yet

    def _open(self):
        return ctranslate2.Generator(str(self.model_dir), **self._options)

    def _generator(self):
        if not self._live:  # a swap whose open failed is retried here
            self._live.append(self._open())
        return self._live[0]

    def _renew(self) -> None:
        """Replace a generator that has sampled; call with GENERATION_LOCK held."""
        # CTranslate2 seeds a worker thread's random engine once, the first time it samples
        # (it is thread_local), so set_random_seed can't reseed a generator that has sampled:
        # only a new one, whose worker hasn't drawn yet, starts from the seed.
        if not self._fresh:
            self._live.clear()  # free the old one first: one model in memory at a time
            self._generator()
            self._fresh = True

    def _renew_later(self) -> None:
        # Opening takes ~0.1 s: done after the answer, the next sampled request doesn't wait.
        with GENERATION_LOCK, contextlib.suppress(Exception):  # the next request retries
            self._renew()

    def generate(self, prompt_ids, *, max_new_tokens, params: GenerationParams, seed, watch):
        options = dict(
            # With the prompt in the result, CTranslate2's repetition penalty covers the title
            # as transformers' does, but for its first token (see _greedy). It replays the
            # prompt token by token, so max_length counts it too, less the one it starts from.
            include_prompt_in_result=True,
            max_length=len(prompt_ids) + max_new_tokens - 1,
            repetition_penalty=params.repetition_penalty,
            end_token=EOS_TOKEN,
            return_end_token=True,
        )
        if params.do_sample:
            options.update(
                sampling_topk=params.top_k,  # 0 samples from the whole vocabulary, as top_k=0 does
                sampling_topp=params.top_p,
                sampling_temperature=params.temperature,
            )
            with GENERATION_LOCK:
                self._renew()
                ctranslate2.set_random_seed(seed)
                self._fresh = False
                rows = self._run(prompt_ids, options, watch, params.num_return_sequences)[0]
            threading.Thread(target=self._renew_later, name="ct2-renew", daemon=True).start()
        else:
            with GENERATION_LOCK:
                rows = [self._greedy(prompt_ids, options, watch, max_new_tokens)]
        return [finish(row, self.eos_id, max_new_tokens, watch) for row in rows]

    def _run(self, start_ids, options, watch, rows=1, *, stop_at=None):
        """Generate after `start_ids`: the new ids of each row, and the logits of the last step.

        The watch hears the first row's new tokens; `stop_at` ends the run when that token
        comes, without telling the watch: the caller decides whether it stands.
        """
        first_new_step = len(start_ids) - 1  # earlier steps replay the start
        stopped = []

        def step(result) -> bool:  # True ends that row's generation
            if result.step < first_new_step:  # replaying the start, as other engines prefill it
                return False
            if result.batch_id != 0:
                return watch.step(None)
            if result.token_id == stop_at:
                stopped.append(result.step)
                return True
            return watch.step(result.token_id)

        start = [self.tokenizer.id_to_token(i) for i in start_ids]
        results = self._generator().generate_batch(
            [start] * rows, callback=step, return_logits_vocab=stop_at is not None, **options
        )
        new_rows = [result.sequences_ids[0][len(start_ids):] for result in results]
        last_logits = results[0].logits[0][-1] if stopped else None
        return new_rows, last_logits

    def _greedy(self, prompt_ids, options, watch, max_new_tokens) -> list[int]:
        # CTranslate2 penalises every token of the sequence but the one decoding starts from,
        # the title's first. Where that token comes out on top and the title doesn't hold it
        # again, stop there, penalise it as transformers does, pick again and go on from there.
        first, penalty = prompt_ids[0], options["repetition_penalty"]
        new: list[int] = []
        while True:
            unpenalised = penalty != 1.0 and first not in prompt_ids[1:] and first not in new
            [ids], logits = self._run(prompt_ids + new, options, watch,
                                      stop_at=first if unpenalised else None)
            if logits is None:
                return new + ids
            scores = numpy.array(logits, dtype=numpy.float32)
            raw = scores[first]
            scores[first] = raw / penalty if raw > 0 else raw * penalty
            chosen = int(scores.argmax())
            new += ids[:-1] + [chosen]
            if watch.step(chosen) or chosen == self.eos_id or len(new) >= max_new_tokens:
                return new


def is_own_format(path: Path) -> bool:
    """A directory written by CTranslate2's converter: model.bin, no transformers weights."""
    return (path / "model.bin").is_file() and not any(
        (path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")
    )


def load(model_dir: Path, *, threads: int, compute_type: str, tokenizer) -> CTranslate2Engine:
    try:
        return CTranslate2Engine(Path(model_dir), threads=threads, compute_type=compute_type,
                                 tokenizer=tokenizer)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"could not load {str(model_dir)!r}: {short_reason(exc)}") from exc


def prepare(source_dir: Path, out_dir: Path, *, weight_format: str,
            progress: Callable[[str, float | None], None]) -> None:
    """Convert a transformers directory into `out_dir`; needs torch and transformers."""
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast

    class KoGPT2Converter(TransformersConverter):
        # AutoTokenizer would add <|endoftext|> as a 51,201st token, which the model lacks.
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            return PreTrainedTokenizerFast.from_pretrained(
                model_name_or_path, **SPECIAL_TOKENS_MAP, **kwargs
            )

    progress(f"converting to CTranslate2 {weight_format}", None)
    KoGPT2Converter(str(source_dir)).convert(
        str(out_dir), quantization=WEIGHT_FORMATS[weight_format], force=True
    )
