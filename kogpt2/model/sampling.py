"""Choosing the next token from a row of logits, in one place, in transformers' order.

Every engine that decodes in Python (OpenVINO's loop; CTranslate2 where it must) picks tokens
here, so a knob means the same on each, and what the reference (transformers, with its own
LogitsProcessors in this order) does. One row's choice, in order:

1. repetition_penalty over the prompt and the generated tokens, once per distinct token
   (RepetitionPenaltyLogitsProcessor);
2. presence / frequency penalty over the generated tokens only (OpenAI's definitions);
3. logit_bias, added;
4. masking: the end-of-text token always with ignore_eos; it and the stop ids before
   min_new_tokens;
5. greedy: the argmax; or sampling: temperature, top-k, top-p (transformers' warpers), and
   a draw from the row's own seeded stream.

A generated token's log-probability comes from the distribution it was chosen from: greedy,
the log-softmax of the processed logits (so a greedy token is always the best of its top
list); sampling, the log-softmax after the warpers. Only numpy: the slim runtime serves with it.
"""

import numpy as np

from .params import GenerationParams
from .seam import TokenLogprob


def row_rng(seed: int, choice: int) -> np.random.Generator:
    """Choice `choice`'s own random stream under `seed`: what it draws never depends on the
    other rows of its request or batch. Choice 0 draws the stream `seed` always gave."""
    key = (choice,) if choice else ()
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def row_seed(seed: int, choice: int) -> int:
    """The same for an engine with a random generator of its own (torch): an integer seed for
    row `choice`; choice 0's is `seed` itself."""
    if not choice:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(choice,)).generate_state(1)[0])


class RowSampler:
    """One row's choices, step after step: its own penalties (over its own prompt and its own
    tokens), masks, stream and log-probabilities."""

    def __init__(self, params: GenerationParams, prompt_ids: list[int], *, eos_id: int,
                 seed: int | None = None, choice: int = 0):
        self.params = params
        self.eos_id = eos_id
        if params.do_sample and seed is None:
            raise ValueError("sampling needs a seed")
        self.rng = row_rng(seed, choice) if params.do_sample else None
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
        """Steps 1–4 on one row of float32 logits, in place; returns it."""
        params = self.params
        penalize(logits, list(self.seen), params.repetition_penalty)
        if self.counts and (params.presence_penalty or params.frequency_penalty):
            ids = np.fromiter(self.counts.keys(), np.int64, len(self.counts))
            counts = np.fromiter(self.counts.values(), np.float32, len(self.counts))
            logits[ids] -= presence_frequency(counts, params.presence_penalty,
                                              params.frequency_penalty)
        if self._bias.size:
            logits[self._bias_ids] += self._bias
        if self.generated < params.min_new_tokens:
            logits[self._min_masked] = -np.inf
        elif params.ignore_eos:
            logits[self._eos] = -np.inf
        return logits

    def choose(self, logits: np.ndarray) -> tuple[int, TokenLogprob | None]:
        """The next token from one row of float32 logits (changed in place), and its
        log-probability when params.logprobs asks for it. Records the token."""
        self.process(logits)
        top = self.params.logprobs
        if not self.params.do_sample:
            token = int(np.argmax(logits))  # the first of equal maxima, as torch.argmax
            logprob = greedy_logprob(logits, token, top) if top is not None else None
        else:
            candidates, probs = distribution(logits, self.params)
            at = draw(probs, self.rng)
            token = int(candidates[at])
            logprob = sampled_logprob(candidates, probs, at, top) if top is not None else None
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


# Top-p sorts only a head of the likeliest candidates, of these sizes in turn, while the head
# holds the top_p mass; else it sorts them all (a flat distribution: random weights).
TOP_P_HEADS = (256, 4096)


def distribution(logits: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """The tokens sampling can draw and their probabilities, after transformers' warpers in
    their order: temperature, top-k, top-p. Only the candidates are carried along, so top-k
    (50 by default) keeps the full-vocabulary work to one partition. The candidates come in
    id order, or with top-p in ascending order of score (ties: the lower id first): the draw
    depends on that order."""
    if params.temperature != 1.0:
        logits = logits / np.float32(params.temperature)
    candidates = np.arange(logits.size)
    if params.top_k:  # 0 is off; ties with the k-th score stay in, as in TopKLogitsWarper
        k = min(params.top_k, logits.size)
        kth = np.partition(logits, logits.size - k)[logits.size - k]
        candidates = np.flatnonzero(logits >= kth)
    scores = logits[candidates]
    if params.top_p < 1.0:
        kept = nucleus(scores, params.top_p)
        candidates, scores = candidates[kept], scores[kept]
    return candidates, softmax(scores)


def nucleus(scores: np.ndarray, top_p: float) -> np.ndarray:
    """TopPLogitsWarper's choice: where the scores in ascending order (ties: the lower index
    first) cumulate a probability > 1 - top_p, always the likeliest one; those indices in that
    order. Only the likeliest few are sorted when they hold the top_p mass, normalized by the
    log-sum-exp of all the scores; the whole row when they don't."""
    scores = scores + np.float32(0.0)  # -0.0 is 0.0, as the comparisons of a sort see it
    top = scores.max()
    total = None
    for at, size in enumerate(TOP_P_HEADS):
        if size * 2 > scores.size:
            break
        if total is None:
            total = np.exp(scores.astype(np.float64) - top).sum()
        head = np.argpartition(scores, scores.size - size)[scores.size - size:]
        head = ascending(scores[head], head)[::-1]  # best first; ties: the higher index first
        probs = np.exp(scores[head].astype(np.float64) - top) / total
        above = np.cumsum(probs) - probs  # the mass of the likelier ones
        count = int(np.count_nonzero(above < top_p)) or 1
        # The head decides if its first left-out one comes after the last kept, and nothing
        # outside the head ties with the last kept (its index could rank above it).
        if count < size and scores[head[count - 1]] > scores[head[-1]]:
            return head[:count][::-1]
        # A bigger head holds at most this much more, none likelier than this head's last.
        bigger = TOP_P_HEADS[at + 1] if at + 1 < len(TOP_P_HEADS) else 0
        if above[-1] + probs[-1] + (bigger - size) * probs[-1] < top_p:
            break
    order = ascending(scores, np.arange(scores.size))
    keep = np.cumsum(softmax(scores[order])) > 1 - top_p
    keep[-1] = True
    return order[keep]


def ascending(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`ids` (< 2**32, distinct) in ascending order of their `scores`, ties in ascending
    order of id: what a stable argsort gives, at a third of its cost, as one sort of unsigned
    64-bit keys, the score's bits made order-preserving above the id."""
    bits = scores.astype(np.float32).view(np.uint32).astype(np.uint64)
    negative = (bits >> np.uint64(31)) == 1
    bits = np.where(negative, bits ^ np.uint64(0xFFFFFFFF), bits | np.uint64(0x80000000))
    keys = (bits << np.uint64(32)) | ids.astype(np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Where one draw from `probs` lands: torch.multinomial's for one sample, the largest
    p / q with q ~ Exp(1) per candidate (an exponential race, a Gumbel-max in disguise); the
    seeded numpy stream replaces torch's."""
    with np.errstate(divide="ignore"):  # p / q is inf for a q of exactly 0: it wins, rightly
        return int(np.argmax(probs / rng.standard_exponential(probs.size)))


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
    if logprobs.size > n:
        head = np.argpartition(-logprobs, n - 1)[:n]
        # Ties at the edge of the partition: take them all, then order and cut.
        head = np.flatnonzero(logprobs >= logprobs[head].min())
    else:
        head = np.arange(logprobs.size)
    head = head[np.lexsort((ids[head], -logprobs[head]))][:n]
    return [(int(ids[i]), float(logprobs[i])) for i in head if np.isfinite(logprobs[i])]


def greedy_logprob(processed: np.ndarray, token: int, n: int) -> TokenLogprob:
    logprobs = log_softmax(processed)
    return TokenLogprob(token, float(logprobs[token]), best(logprobs, n))


def sampled_logprob(candidates: np.ndarray, probs: np.ndarray, at: int, n: int) -> TokenLogprob:
    with np.errstate(divide="ignore"):
        logprobs = np.log(probs)
    order = np.argsort(candidates)  # best() wants ids ascending for its tie rule
    return TokenLogprob(int(candidates[at]), float(logprobs[at]),
                        best(logprobs[order], n, candidates[order]))


def prompt_logprobs(logits, prompt_ids: list[int], n: int) -> list[TokenLogprob | None]:
    """Each prompt token's log-probability given the ones before it, from the raw model's
    logits (no penalties): `logits[i]` is what the model gave after prompt_ids[: i + 1]
    (rows past len(prompt_ids) - 2 are not needed). The first token has none: None."""
    scored: list[TokenLogprob | None] = [None]
    for i, token in enumerate(prompt_ids[1:]):
        logprobs = log_softmax(np.asarray(logits[i], dtype=np.float32))
        scored.append(TokenLogprob(token, float(logprobs[token]), best(logprobs, n)))
    return scored
