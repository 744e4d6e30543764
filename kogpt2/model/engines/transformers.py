"""The reference engine: transformers' GPT2LMHeadModel on torch, as the original handler ran it.

Every knob is one of transformers' own LogitsProcessors, in sampling.py's order, with small
ones of our own where transformers has none (OpenAI's presence and frequency penalties) and
for the draw: among the tokens transformers' warpers leave, sampling.py's race, keyed to
(seed, choice, step), picks the one torch's multinomial then takes, so a seed draws what it
draws on OpenVINO. It is the reference, not the fast path: one row at a time. A request's rows
(num_return_sequences) and a batch's prompts run one after another; a row's text never
depends on the others.
"""

import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    GPT2LMHeadModel,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.logits_process import (
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging as transformers_logging

from .. import sampling
from ..params import GenerationParams
from ..seam import (
    EngineOutput,
    EngineRequest,
    EngineResult,
    ModelLoadError,
    TokenLogprob,
    Turns,
    Watch,
    finish,
    refuse_unless,
    short_reason,
    waited_ms,
)
from ..vocab import SPECIAL_TOKENS_MAP, eos_id
from . import TRANSFORMERS

NAME = "transformers"


class _Tap(LogitsProcessor):
    """Keeps each step's scores as they reach it: first in the chain, the model's own logits
    (raw_logprobs); last before the draw, what the token is chosen from (processed)."""

    def __init__(self):
        self.rows: list[np.ndarray] = []

    def __call__(self, input_ids, scores):
        self.rows.append(scores[0].numpy().copy())
        return scores


class _Draw(LogitsProcessor):
    """Last when sampling: the token drawn from what transformers' warpers leave finite, by
    sampling.py's race keyed to (seed, choice, step), left alone for torch's multinomial to
    take. So a seed draws here what it draws on the engines that decode with sampling.py."""

    def __init__(self, seed: int, choice: int, prompt_length: int):
        self.seed, self.choice, self.prompt_length = seed, choice, prompt_length

    def __call__(self, input_ids, scores):
        row = scores[0].numpy()
        kept = np.flatnonzero(np.isfinite(row))
        step = input_ids.shape[1] - self.prompt_length
        exponentials = sampling.exponentials(self.seed, self.choice, step, kept, row.size)
        token = kept[sampling.race(row[kept], 1.0, exponentials)]
        drawn = torch.full_like(scores, -torch.inf)
        drawn[0, token] = 0.0
        return drawn


class _Steps(StoppingCriteria):
    """Tells the watch about each step (the row's new token, when it listens, with its
    log-probability from `tap` when asked) and stops when it says so."""

    def __init__(self, watch: Watch, listen: bool, logprobs: int | None, tap: _Tap | None):
        self.watch, self.listen, self.logprobs, self.tap = watch, listen, logprobs, tap

    def __call__(self, input_ids, scores, **kwargs):
        token = int(input_ids[0, -1]) if self.listen else None
        chosen = None
        if token is not None and self.tap is not None:
            chosen = _logprob(self.tap.rows[-1], token, self.logprobs)
        stop = self.watch.step(token, chosen)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class PresenceFrequencyPenalty(LogitsProcessor):
    """OpenAI's presence and frequency penalties over the generated tokens (not the prompt):
    logit -= presence * (count > 0) + frequency * count, computed as sampling.py computes it."""

    def __init__(self, presence: float, frequency: float, prompt_length: int):
        self.presence, self.frequency = presence, frequency
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        for row, ids in enumerate(input_ids[:, self.prompt_length:]):
            if ids.numel():
                tokens, counts = torch.unique(ids, return_counts=True)
                penalty = sampling.presence_frequency(counts.numpy(), self.presence,
                                                      self.frequency)
                scores[row, tokens] -= torch.from_numpy(penalty)
        return scores


def processors(params: GenerationParams, prompt_length: int, eos: int) -> LogitsProcessorList:
    """sampling.py's order, in transformers' processors: bias, penalties, masks, warpers (its
    own list puts the bias before the repetition penalty too)."""
    chain = []
    if params.logit_bias:
        chain.append(SequenceBiasLogitsProcessor(
            [[[token], bias] for token, bias in params.logit_bias.items()]
        ))
    if params.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.presence_penalty or params.frequency_penalty:
        chain.append(PresenceFrequencyPenalty(params.presence_penalty, params.frequency_penalty,
                                              prompt_length))
    if params.min_new_tokens:
        chain.append(MinNewTokensLengthLogitsProcessor(
            prompt_length, params.min_new_tokens, [eos, *params.stop_token_ids]
        ))
    if params.ignore_eos:
        chain.append(SuppressTokensLogitsProcessor([eos]))
    if params.do_sample:
        if params.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            chain.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            chain.append(TopPLogitsWarper(params.top_p))
    return LogitsProcessorList(chain)


class TransformersEngine:
    name = NAME
    compute_type = "float32"
    features = TRANSFORMERS.features
    max_rows = 1  # the reference runs one row at a time

    def __init__(self, model, eos: int, pad: int):
        self.model, self.eos_id, self.pad_id = model, eos, pad
        # torch's RNG is global: a seeded sampling run must not interleave with another.
        self._turns = Turns(self.max_rows)

    def stats(self) -> dict[str, int]:
        return self._turns.stats()

    def generate(self, requests: list[EngineRequest]) -> list[EngineResult]:
        for request in requests:
            refuse_unless(self.name, self.features, request.params)
        arrived = time.monotonic()
        results = []
        for request in requests:
            with self._turns.turn(request.rows) as started:
                results.append(self._generate(request, waited_ms(arrived, started)))
        return results

    def _generate(self, request: EngineRequest, queued_ms: int) -> EngineResult:
        params = request.params
        scored = None
        if params.prompt_logprobs is not None:
            scored = self.prompt_logprobs(request.prompt_ids, params.prompt_logprobs)
        rows = [self._row(request, choice) for choice in range(request.rows)]
        return EngineResult(rows, scored, queued_ms)

    def prompt_logprobs(self, prompt_ids: list[int], n: int) -> list[TokenLogprob | None]:
        """One forward pass over the prompt: each token's log-softmax given those before it."""
        with torch.inference_mode():
            logits = self.model(torch.tensor([prompt_ids])).logits[0].numpy()
        return sampling.prompt_logprobs(logits, prompt_ids, n)

    def _row(self, request: EngineRequest, choice: int) -> EngineOutput:
        params, prompt_ids = request.params, request.prompt_ids
        end_ids = [*params.stop_token_ids, *([] if params.ignore_eos else [self.eos_id])]
        if request.max_new_tokens == 0:
            return finish([], end_ids, 0, request.watch)
        chain = processors(params, len(prompt_ids), self.eos_id)
        tap = _Tap() if params.logprobs is not None else None
        if tap is not None:
            chain.insert(0 if request.logprobs_mode == "raw_logprobs" else len(chain), tap)
        if params.do_sample:
            chain.append(_Draw(request.seed, choice, len(prompt_ids)))
        # Every knob is in processors(): transformers' own defaults would add warpers (its
        # top_k is 50), and it warns of sampling flags on a greedy run.
        warpers_off = dict(temperature=1.0, top_k=0, top_p=1.0) if params.do_sample else {}
        config = GenerationConfig(
            max_new_tokens=request.max_new_tokens,
            do_sample=params.do_sample,
            **warpers_off,
            repetition_penalty=1.0,
            num_return_sequences=1,
            use_cache=True,
            pad_token_id=self.pad_id,
            eos_token_id=end_ids or None,
            bos_token_id=self.eos_id,
            return_dict_in_generate=True,
        )
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                logits_processor=chain,
                stopping_criteria=StoppingCriteriaList(
                    [_Steps(request.watch, choice == 0, params.logprobs, tap)]),
            )
        new_ids = output.sequences[0, len(prompt_ids):].tolist()
        logprobs = None
        if tap is not None:
            logprobs = [_logprob(step, token, params.logprobs)
                        for step, token in zip(tap.rows, new_ids, strict=False)]
        return finish(new_ids, end_ids, request.max_new_tokens, request.watch, logprobs,
                      self.eos_id)


def _logprob(scores: np.ndarray, token: int, n: int) -> TokenLogprob:
    """From the model's own logits (raw_logprobs), or the scores transformers chose `token`
    from (processed_logprobs: processed, warped, -inf where filtered)."""
    return sampling.token_logprob(scores, token, n)


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
