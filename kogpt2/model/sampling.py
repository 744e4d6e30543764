"""Choosing the next token from a row of logits, in one place, in transformers' order.

Every engine that decodes in Python (OpenVINO's loop; CTranslate2 where it must) picks tokens
here, so a knob means the same on each, and what the reference (transformers, with its own
LogitsProcessors in this order) does. One row's choice, in order:

1. logit_bias, added (transformers' own list puts SequenceBiasLogitsProcessor before the
   penalties; vLLM adds it before its penalties too);
2. repetition_penalty over the prompt and the generated tokens, once per distinct token
   (RepetitionPenaltyLogitsProcessor);
3. presence / frequency penalty over the generated tokens only (OpenAI's definitions, after
   the repetition penalty as in vLLM);
4. masking: the end-of-text token always with ignore_eos; it and the stop ids before
   min_new_tokens;
5. greedy: the argmax; or sampling: temperature, top-k, top-p (transformers' warpers), and
   a draw keyed to (seed, choice, step).

The draw is an exponential race (the Gumbel-max trick): every token has its own random number
for each (seed, choice, step), computed by a counter-based hash only for the tokens that take
part, and the candidate with the largest p / E wins (E = -log(1 - u), an Exp(1) variable).
That is a draw from the candidates' distribution, and a token's number never depends on how
many others are candidates, so a row's draws depend on its own steps only. Top-p then needs no
ordering of the vocabulary: the race's winner over the top-k candidates stands if the tokens
ranked above it hold less than top_p of the mass; else the race is run again among those
ranked above it, until one stands. With the numbers fixed per token, that is exactly the race
over TopPLogitsWarper's set (FlashInfer's rejection sampling, made exact).

A generated token's log-probability (seam.LogprobsMode, vLLM's logprobs_mode): raw_logprobs
(the default), the log-softmax of the model's own logits, before 1-5; processed_logprobs, the
distribution it was chosen from: greedy, the log-softmax after 1-4 (a greedy token is the best
of its list); sampling, after the warpers too, renormalized over the tokens that could be drawn.
A prompt token's is the model's own in both. Only numpy: the slim runtime serves with it.
"""

import numpy as np

from .params import GenerationParams
from .seam import LogprobsMode, TokenLogprob


class RowSampler:
    """One row's choices, step after step: its own penalties (over its own prompt and its own
    tokens), masks, draws and log-probabilities."""

    def __init__(self, params: GenerationParams, prompt_ids: list[int], *, eos_id: int,
                 seed: int | None = None, choice: int = 0,
                 logprobs_mode: LogprobsMode = "raw_logprobs"):
        self.params = params
        self.eos_id = eos_id
        if params.do_sample and seed is None:
            raise ValueError("sampling needs a seed")
        self.seed, self.choice = seed, choice
        self.raw_logprobs = logprobs_mode == "raw_logprobs"
        self.seen = dict.fromkeys(prompt_ids)  # ordered, distinct: the repetition penalty's
        self.counts: dict[int, int] = {}  # the generated tokens: presence / frequency
        self.generated = 0
        self.stop_ids = frozenset(params.stop_token_ids)
        self.end_ids = self.stop_ids | ({eos_id} if not params.ignore_eos else frozenset())
        self._bias_ids = np.fromiter(params.logit_bias.keys(), np.int64, len(params.logit_bias))
        self._bias = np.fromiter(params.logit_bias.values(), np.float32, len(params.logit_bias))
        self._eos = np.array([eos_id])
        self._min_masked = np.array(sorted(self.stop_ids | {eos_id}))

    def ends(self, token: int) -> bool:
        """Does `token` end this row (EOS unless ignore_eos, or a stop id)?"""
        return token in self.end_ids

    def process(self, logits: np.ndarray) -> np.ndarray:
        """Steps 1-4 on one row of float32 logits, in place; returns it."""
        params = self.params
        if self._bias.size:
            logits[self._bias_ids] += self._bias
        penalize(logits, list(self.seen), params.repetition_penalty)
        if self.counts and (params.presence_penalty or params.frequency_penalty):
            ids = np.fromiter(self.counts.keys(), np.int64, len(self.counts))
            counts = np.fromiter(self.counts.values(), np.float32, len(self.counts))
            logits[ids] -= presence_frequency(counts, params.presence_penalty,
                                              params.frequency_penalty)
        if self.generated < params.min_new_tokens:
            logits[self._min_masked] = -np.inf
        elif params.ignore_eos:
            logits[self._eos] = -np.inf
        return logits

    def choose(self, logits: np.ndarray) -> tuple[int, TokenLogprob | None]:
        """The next token from one row of float32 logits (changed in place), and its
        log-probability when params.logprobs asks for it. Records the token."""
        params, top = self.params, self.params.logprobs
        raw = logits.copy() if top is not None and self.raw_logprobs else None
        self.process(logits)
        if not params.do_sample:
            token = int(np.argmax(logits))  # the first of equal maxima, as torch.argmax
        else:
            token = draw(logits, params, self.seed, self.choice, self.generated)
        logprob = None
        if raw is not None:
            logprob = token_logprob(raw, token, top)
        elif top is not None:
            logprob = (sampled_logprob(logits, params, token, top) if params.do_sample
                       else token_logprob(logits, token, top))
        self.record(token)
        return token, logprob

    def record(self, token: int) -> None:
        """Count `token` as this row's newest (a choice made elsewhere, e.g. by an engine)."""
        self.seen[token] = None
        self.counts[token] = self.counts.get(token, 0) + 1
        self.generated += 1


def penalize(logits: np.ndarray, seen: list[int], penalty: float) -> None:
    """RepetitionPenaltyLogitsProcessor: each token already in the sequence once; a positive
    logit is divided by the penalty, any other multiplied, in float32 as torch does."""
    if penalty != 1.0 and seen:
        ids = np.array(seen)
        scores = logits[ids]
        logits[ids] = np.where(scores < 0, scores * np.float32(penalty),
                               scores / np.float32(penalty))


def presence_frequency(counts: np.ndarray, presence: float, frequency: float) -> np.ndarray:
    """What OpenAI subtracts from a generated token's logit: presence once, frequency per time
    it came (float32; the transformers reference computes it the same way)."""
    return np.float32(presence) + np.float32(frequency) * counts.astype(np.float32)


# --- sampling ----------------------------------------------------------------------------------

def warp(logits: np.ndarray, params) -> tuple[np.ndarray | None, np.ndarray]:
    """Temperature and top-k (TemperatureLogitsWarper, TopKLogitsWarper): the candidates' ids,
    ascending (None: every token), and their float32 scores."""
    scores = logits / np.float32(params.temperature) if params.temperature != 1.0 else logits
    if params.top_k and params.top_k < scores.size:  # 0 is off
        ids = top_k_ids(scores, params.top_k)
        return ids, scores[ids]
    return None, scores


def top_k_ids(values: np.ndarray, k: int) -> np.ndarray:
    """The indices, ascending, of the values at least the k-th largest: ties with it stay in,
    as in TopKLogitsWarper. Without ordering the row: the smallest of the maxima of k disjoint
    groups is no more than the k-th largest, and on any row few values reach it."""
    size = values.size
    if k >= size:
        return np.arange(size)
    group = size // k
    pool = np.flatnonzero(values >= values[: group * k].reshape(k, group).max(axis=1).min())
    kept = values[pool]
    if pool.size > k:
        pool = pool[kept >= np.partition(kept, pool.size - k)[pool.size - k]]
    return pool


def draw(logits: np.ndarray, params, seed: int, choice: int, step: int) -> int:
    """The token sampling takes from processed logits at `step` (the row's count of tokens
    so far): the race over TopPLogitsWarper's set after temperature and top-k."""
    ids, scores = warp(logits, params)
    at = race(scores, params.top_p, exponentials(seed, choice, step, ids, logits.size))
    return at if ids is None else int(ids[at])


def race(scores: np.ndarray, top_p: float, exponentials_: np.ndarray) -> int:
    """The index of the largest p / E among the scores' top-p set (their probabilities p, each
    one's own Exp(1) number E, overwritten), found without ordering them: a winner outside the
    set is replaced by the winner among the ones ranked above it."""
    weights = scores - scores.max()
    np.exp(weights, out=weights)  # p up to their sum; a masked (-inf) token's is 0
    keys = np.divide(weights, exponentials_, out=exponentials_)
    winner = int(np.argmax(keys))
    if top_p >= 1.0:
        return winner
    # The rule's sums are float64 ones (as nucleus() makes them); float32's pairwise sums are
    # within 1e-6 of them, so they decide where the mass is not that close to the limit. (Not
    # np.dot: BLAS threads would contend with the model's.)
    total = weights.sum()
    while True:
        above = ranked_above(scores, winner)
        mass = np.multiply(weights, above).sum()
        if abs(mass - top_p * total) > 1e-5 * total:
            kept = mass < top_p * total
        else:
            kept = (weights * above).sum(dtype=np.float64) < top_p * weights.sum(dtype=np.float64)
        if kept:
            return winner
        keys *= above  # a key is never negative: the others can't win (the likeliest is above)
        winner = int(np.argmax(keys))


def ranked_above(scores: np.ndarray, at: int) -> np.ndarray:
    """Where TopPLogitsWarper's order puts a token before `at`: a higher score, or an equal
    one at a higher index (its ascending sort leaves ties in index order)."""
    above = scores > scores[at]
    ties = scores == scores[at]
    if np.count_nonzero(ties) > 1:
        ties[: at + 1] = False
        above |= ties
    return above


# The exponentials' hash: murmur3's 32-bit finalizer, and a table of each token id mixed once
# (per vocabulary size), so a step mixes its key into the candidates' entries once more.
_MIX = (np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35))
_TOKEN_BITS: dict[int, np.ndarray] = {}
_BELOW_ONE = np.float32(1.0 - 2.0**-24)


def _mix(bits: np.ndarray) -> np.ndarray:
    shifted = bits >> np.uint32(16)
    bits ^= shifted
    bits *= _MIX[0]
    bits ^= np.right_shift(bits, np.uint32(13), out=shifted)
    bits *= _MIX[1]
    bits ^= np.right_shift(bits, np.uint32(16), out=shifted)
    return bits


def exponentials(seed: int, choice: int, step: int, ids: np.ndarray | None,
                 size: int) -> np.ndarray:
    """Exp(1) numbers, float32: token ids[i]'s own at (seed, choice, step), every token's of
    `size` when `ids` is None. A token's number is the same whichever others are asked."""
    table = _TOKEN_BITS.get(size)
    if table is None:
        table = _TOKEN_BITS[size] = _mix(np.arange(size, dtype=np.uint32)
                                         * np.uint32(0x9E3779B1))
    key = np.random.SeedSequence(seed, spawn_key=(choice, step)).generate_state(1)[0]
    bits = np.bitwise_xor(table if ids is None else table[ids], key)
    # -u, u uniform in (0, 1): 32 bits, fine near 0, where the race is won; never 1 (E = inf)
    uniform = _mix(bits).astype(np.float32)
    uniform *= np.float32(-2.0**-32)
    np.clip(uniform, -_BELOW_ONE, np.float32(-2.0**-33), out=uniform)
    np.log1p(uniform, out=uniform)  # log(1 - u) = -E
    return np.negative(uniform, out=uniform)


# --- the distribution a sampled token came from (processed_logprobs, CTranslate2's tokens) -----

def distribution(logits: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """The tokens sampling can draw from processed logits, ascending, and their float64
    probabilities: transformers' warpers in their order (temperature, top-k, top-p)."""
    ids, scores = warp(logits, params)
    if ids is None:
        ids = np.arange(scores.size)
    if params.top_p < 1.0:
        kept = nucleus(scores, params.top_p)
        ids, scores = ids[kept], scores[kept]
    return ids, softmax(scores)


def nucleus(scores: np.ndarray, top_p: float) -> np.ndarray:
    """TopPLogitsWarper's set as indices, ascending, listed in full (race() only checks one
    token at a time): each index whose likelier ones (its order: ranked_above) hold less than
    top_p of the mass. This one sorts."""
    weights = np.exp(scores - scores.max())  # as race() weighs them
    order = ascending(scores, np.arange(scores.size))[::-1]  # best first, ties: higher first
    above = np.concatenate(([0.0], np.cumsum(weights[order], dtype=np.float64)[:-1]))
    return np.sort(order[above < top_p * weights.sum(dtype=np.float64)])


def ascending(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`ids` (< 2**32, distinct) in ascending order of their `scores`, ties in ascending
    order of id: what a stable argsort gives, at a third of its cost, as one sort of unsigned
    64-bit keys, the score's bits made order-preserving above the id."""
    scores = scores.astype(np.float32) + np.float32(0.0)  # -0.0 is 0.0, as comparisons see it
    bits = scores.view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)) == 1
    bits = np.where(negative, bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))
    keys = (bits << np.uint64(32)) | ids.astype(np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def sampled_logprob(logits: np.ndarray, params, token: int, n: int) -> TokenLogprob:
    """processed_logprobs of a sampled token: the log-probability of `token` in
    distribution(), with its `n` likeliest. A token outside it (a tie CTranslate2 broke the
    other way at the top-k edge, or the last bit of a sum at the top-p edge) joins it: it was
    drawn."""
    ids, probs = distribution(logits, params)
    if not np.any(ids == token):
        ids = np.union1d(ids, [token])
        probs = softmax(logits[ids] / np.float32(params.temperature))
    with np.errstate(divide="ignore"):
        logprobs = np.log(probs)
    at = int(np.flatnonzero(ids == token)[0])
    return TokenLogprob(token, float(logprobs[at]), best(logprobs, n, ids))


# --- log-probabilities -------------------------------------------------------------------------

def softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores.astype(np.float64) - scores.max())
    return exp / exp.sum()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """In float64: -inf stays -inf."""
    scores = logits.astype(np.float64)
    top = scores.max()
    return scores - (top + np.log(np.exp(scores - top).sum()))


def best(logprobs: np.ndarray, n: int, ids: np.ndarray | None = None) -> list[tuple[int, float]]:
    """The `n` likeliest (id, logprob) of a row, best first, ties by the lower id; never
    -inf. `ids` names the row's entries when they are not 0..size-1 (ascending)."""
    if n == 0:
        return []
    ids = np.arange(logprobs.size) if ids is None else ids
    head = top_k_ids(logprobs, n)
    head = head[np.lexsort((ids[head], -logprobs[head]))][:n]
    return [(int(ids[i]), float(logprobs[i])) for i in head if np.isfinite(logprobs[i])]


def token_logprob(logits: np.ndarray, token: int, n: int) -> TokenLogprob:
    """`token`'s log-softmax in a row of logits, with the row's `n` likeliest: the raw
    model's row (raw_logprobs, a prompt's tokens), or greedy's processed one."""
    logprobs = log_softmax(logits)
    return TokenLogprob(token, float(logprobs[token]), best(logprobs, n))


def prompt_logprobs(logits, prompt_ids: list[int], n: int) -> list[TokenLogprob | None]:
    """Each prompt token's log-probability given the ones before it, from the raw model's
    logits (no penalties): `logits[i]` is what the model gave after prompt_ids[: i + 1]
    (rows past len(prompt_ids) - 2 are not needed). The first token has none: None."""
    return [None] + [token_logprob(np.asarray(logits[i], dtype=np.float32), token, n)
                     for i, token in enumerate(prompt_ids[1:])]
