"""sampling.py, the one place where a row's next token is chosen, against transformers' own
logits processors and warpers (the reference engine's chain, engines/transformers.py)."""

import numpy as np
import pytest
import torch

from kogpt2.model import sampling
from kogpt2.model.engines.transformers import processors
from kogpt2.model.params import GenerationParams
from kogpt2.model.sampling import RowSampler

EOS = 1
VOCAB = 3000


def reference_scores(logits, prompt, generated, params):
    """The scores transformers samples from (or takes the argmax of), -inf where filtered."""
    ids = torch.tensor([prompt + generated])
    scores = torch.tensor(logits[None])
    return processors(params, len(prompt), EOS)(ids, scores)[0].numpy()


def sampler_after(params, prompt, generated, seed=0):
    """A RowSampler that has made `generated` already."""
    row = RowSampler(params, prompt, eos_id=EOS, seed=seed if params.do_sample else None)
    for token in generated:
        row.record(token)
    return row


PARAMS = [
    GenerationParams(),
    GenerationParams(repetition_penalty=1.3),
    GenerationParams(do_sample=True),
    GenerationParams(do_sample=True, top_k=0),
    GenerationParams(do_sample=True, top_k=0, top_p=0.9, temperature=0.7),
    GenerationParams(do_sample=True, top_k=5, top_p=0.5, temperature=1.5),
    GenerationParams(do_sample=True, top_k=1),
    GenerationParams(do_sample=True, top_k=0, top_p=1e-6),
    GenerationParams(do_sample=True, top_k=1000, top_p=0.95, repetition_penalty=1.0),
    GenerationParams(presence_penalty=1.5, frequency_penalty=-0.7),
    GenerationParams(do_sample=True, top_k=0, top_p=0.8, presence_penalty=-2.0,
                     frequency_penalty=2.0),
    GenerationParams(logit_bias={7: 100.0, 11: -100.0, 12: 3.25, 2999: -0.5}),
    GenerationParams(min_new_tokens=50, stop_token_ids=[4, 9]),
    GenerationParams(ignore_eos=True, do_sample=True, top_k=20, logit_bias={EOS: 50.0}),
]


def rows(rng, count=5):
    for _ in range(count):
        logits = (rng.standard_normal(VOCAB) * 3).astype(np.float32)
        logits[:10] = logits[10]  # ties at the top-k edge must be kept, as transformers keeps
        logits[[EOS, 4, 9]] = logits.max() + np.array([1, 1.5, 2])  # on top, for the masks
        prompt = list(rng.integers(0, VOCAB, 20)) + [0, 5]
        generated = list(rng.integers(0, VOCAB, 20)) + [12, 12, 12, 7]
        yield logits, [int(t) for t in prompt], [int(t) for t in generated]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.model_dump_json(exclude_defaults=True))
def test_processing_and_warpers_match_transformers(params):
    rng = np.random.default_rng(0)
    for logits, prompt, generated in rows(rng):
        expected = reference_scores(logits, prompt, generated, params)
        mine = sampler_after(params, prompt, generated).process(logits.copy())
        if not params.do_sample:
            np.testing.assert_array_equal(mine, expected)
            continue
        candidates, probs = sampling.distribution(mine, params)
        assert set(candidates.tolist()) == set(np.flatnonzero(np.isfinite(expected)).tolist())
        finite = expected[candidates]
        reference = np.exp(finite - finite.max()) / np.exp(finite - finite.max()).sum()
        np.testing.assert_allclose(probs, reference, rtol=1e-5, atol=1e-9)


def test_a_tie_across_the_top_p_edge_keeps_as_many_as_transformers_the_higher_ids():
    """Where tied tokens straddle the top-p edge, transformers keeps as many as it needs in
    the order its (unstable) sort left them; here the order is fixed: the higher ids first,
    as a stable ascending sort leaves them (the rule before this module existed)."""
    logits = np.zeros(20, dtype=np.float32)
    logits[[3, 8, 13, 17]] = 5.0  # four equal tokens hold almost all the mass
    params = GenerationParams(do_sample=True, top_k=0, top_p=0.6, repetition_penalty=1.0)
    expected = reference_scores(logits, [0], [], params)
    candidates, probs = sampling.distribution(logits.copy(), params)
    assert len(candidates) == np.isfinite(expected).sum() == 3
    assert sorted(candidates.tolist()) == [8, 13, 17]
    np.testing.assert_allclose(probs, [1 / 3] * 3)


def test_presence_and_frequency_are_openais_definitions():
    params = GenerationParams(repetition_penalty=1.0, presence_penalty=0.5,
                              frequency_penalty=0.25)
    row = sampler_after(params, prompt=[3, 4], generated=[5, 5, 5, 6])
    logits = row.process(np.zeros(8, dtype=np.float32))
    # 5 came 3 times: 0.5 + 3 * 0.25; 6 once: 0.5 + 0.25; 3 and 4 only in the prompt: nothing.
    assert logits.tolist() == [0, 0, 0, 0, 0, -1.25, -0.75, 0]


def test_end_tokens_are_masked_before_min_new_tokens_and_eos_with_ignore_eos():
    params = GenerationParams(repetition_penalty=1.0, min_new_tokens=2, stop_token_ids=[4])
    row = sampler_after(params, [3], [])
    logits = np.zeros(6, dtype=np.float32)
    logits[[EOS, 4]] = 5.0
    assert row.choose(logits.copy())[0] == 0  # not EOS, not 4: the first of the rest
    assert row.choose(logits.copy())[0] == 0
    assert row.choose(logits.copy())[0] == EOS  # from the third new token on
    assert row.ends(EOS) and row.ends(4) and not row.ends(0)
    ignore = sampler_after(GenerationParams(repetition_penalty=1.0, ignore_eos=True), [3], [])
    assert ignore.choose(logits.copy())[0] == 4 and not ignore.ends(EOS)


def test_draws_follow_the_distribution():
    logits = np.full(100, -10.0, dtype=np.float32)
    logits[[3, 7, 9]] = np.log([0.5, 0.3, 0.2])
    params = GenerationParams(do_sample=True, top_k=3, repetition_penalty=1.0)
    row = RowSampler(params, [], eos_id=EOS, seed=1)
    draws = [row.choose(logits.copy())[0] for _ in range(20000)]
    counts = {token: draws.count(token) / len(draws) for token in set(draws)}
    assert counts.keys() == {3, 7, 9}
    assert counts == pytest.approx({3: 0.5, 7: 0.3, 9: 0.2}, abs=0.015)


def test_a_rows_stream_depends_on_its_seed_and_choice_only():
    params = GenerationParams(do_sample=True, top_k=0, repetition_penalty=1.0)
    logits = np.zeros(1000, dtype=np.float32)

    def draws(seed, choice):
        row = RowSampler(params, [], eos_id=EOS, seed=seed, choice=choice)
        return [row.choose(logits.copy())[0] for _ in range(20)]

    assert draws(5, 2) == draws(5, 2)
    assert len({tuple(draws(5, c)) for c in range(4)} | {tuple(draws(6, 0))}) == 5
    # Choice 0 draws what one seed always drew: numpy's stream of that seed.
    assert sampling.row_rng(5, 0).random() == np.random.default_rng(5).random()


def test_greedy_logprobs_come_from_the_processed_logits_and_the_token_is_the_best():
    params = GenerationParams(logprobs=3, logit_bias={8: 10.0})
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(50).astype(np.float32)
    row = sampler_after(params, [1, 2], [])
    token, logprob = row.choose(logits.copy())
    processed = sampler_after(params, [1, 2], []).process(logits.copy())
    expected = torch.log_softmax(torch.tensor(processed), -1).numpy()
    assert token == 8 and logprob.token_id == 8
    assert logprob.logprob == pytest.approx(expected[8], abs=1e-6)
    assert [t for t, _ in logprob.top] == np.argsort(-expected)[:3].tolist()
    assert logprob.top[0] == (token, logprob.logprob)
    np.testing.assert_allclose([v for _, v in logprob.top], np.sort(expected)[::-1][:3],
                               atol=1e-6)


def test_sampled_logprobs_come_from_the_warped_distribution():
    params = GenerationParams(do_sample=True, top_k=4, temperature=0.5, logprobs=5,
                              repetition_penalty=1.0)
    logits = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0], dtype=np.float32)
    row = RowSampler(params, [], eos_id=EOS, seed=2)
    token, logprob = row.choose(logits.copy())
    warped = torch.log_softmax(torch.tensor(logits[2:6] / 0.5, dtype=torch.float64), -1)
    assert logprob.token_id == token and 2 <= token <= 5
    assert logprob.logprob == pytest.approx(warped[token - 2].item(), abs=1e-9)
    # Four tokens can be drawn: only four alternatives, never a -inf one.
    assert [t for t, _ in logprob.top] == [5, 4, 3, 2]


def test_best_breaks_ties_by_the_lower_id_and_never_lists_minus_infinity():
    logprobs = np.array([-1.0, -0.5, -0.5, -np.inf, -0.5, -2.0])
    assert sampling.best(logprobs, 2) == [(1, -0.5), (2, -0.5)]
    assert sampling.best(logprobs, 6) == [(1, -0.5), (2, -0.5), (4, -0.5), (0, -1.0),
                                          (5, -2.0)]
    assert sampling.best(logprobs, 0) == []


def test_prompt_logprobs_are_the_raw_log_softmax_given_the_tokens_before():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 30)).astype(np.float32)
    prompt = [5, 6, 7, 8]
    scored = sampling.prompt_logprobs(logits, prompt, 2)
    expected = torch.log_softmax(torch.tensor(logits), -1).numpy()
    assert scored[0] is None and [s.token_id for s in scored[1:]] == [6, 7, 8]
    for i, entry in enumerate(scored[1:]):
        assert entry.logprob == pytest.approx(expected[i, prompt[i + 1]], abs=1e-6)
        assert [t for t, _ in entry.top] == np.argsort(-expected[i])[:2].tolist()


# --- top-p over a partitioned head, against the full sort it replaces ---

def full_sort_nucleus(scores, top_p):
    """The rule as it was written before (a stable sort of every candidate)."""
    order = np.argsort(scores, kind="stable")
    keep = np.cumsum(sampling.softmax(scores[order])) > 1 - top_p
    keep[-1] = True
    return order[keep]


def adversarial_rows(rng, size=51200):
    yield (rng.standard_normal(size) * 0.1).astype(np.float32)  # flat: random weights
    for scale in (2.0, 4.0, 8.0):  # peaked, as a trained model's
        yield (rng.standard_normal(size) * scale).astype(np.float32)
    yield np.zeros(size, dtype=np.float32)  # all equal
    one = np.zeros(size, dtype=np.float32)
    one[777] = 30.0  # one token holds all but all the mass
    yield one
    ties = (rng.standard_normal(size) * 4).astype(np.float32)
    ties[rng.choice(size, 40, replace=False)] = ties.max() + 1  # 40 tied at the top
    yield ties
    edge = (rng.standard_normal(size) * 4).astype(np.float32)
    edge[np.argsort(edge)[-300:]] = np.sort(edge)[-300]  # a tie across the 256-head's edge
    yield edge
    masked = (rng.standard_normal(size) * 4).astype(np.float32)
    masked[rng.choice(size, 1000, replace=False)] = -np.inf  # masked tokens (min_new_tokens)
    yield masked
    zeros = (rng.standard_normal(size) * 4).astype(np.float32)
    zeros[:5], zeros[5:10] = -0.0, 0.0  # -0.0 and 0.0 are equal to a sort
    zeros[10] = zeros.max() + 1
    yield zeros


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.95, 0.999, 1e-6])
def test_top_p_keeps_what_the_full_sort_keeps_in_its_order(top_p):
    rng = np.random.default_rng(int(top_p * 1000))
    for scores in adversarial_rows(rng):
        np.testing.assert_array_equal(sampling.nucleus(scores, top_p),
                                      full_sort_nucleus(scores, top_p))


def test_a_peaked_row_sorts_only_a_head_and_a_flat_one_everything(monkeypatch):
    sorted_sizes = []
    real = sampling.ascending
    monkeypatch.setattr(sampling, "ascending",
                        lambda scores, ids: sorted_sizes.append(len(ids)) or real(scores, ids))
    rng = np.random.default_rng(1)
    sampling.nucleus((rng.standard_normal(51200) * 4).astype(np.float32), 0.9)
    assert sorted_sizes == [256]
    sorted_sizes.clear()
    sampling.nucleus((rng.standard_normal(51200) * 3).astype(np.float32), 0.9)  # keeps ~2,000
    assert sorted_sizes == [256, 4096]
    sorted_sizes.clear()
    # Flat: the first head's mass says no bigger one can hold 0.9; straight to the full sort.
    sampling.nucleus((rng.standard_normal(51200) * 0.1).astype(np.float32), 0.9)
    assert sorted_sizes == [256, 51200]


@pytest.mark.parametrize("scale", [0.1, 4.0])
def test_top_p_draws_the_same_tokens_as_the_full_sort_for_a_seed(scale):
    params = GenerationParams(do_sample=True, top_k=0, top_p=0.9, temperature=0.8,
                              repetition_penalty=1.0)
    rng = np.random.default_rng(2)
    row = RowSampler(params, [], eos_id=EOS, seed=42)
    reference_rng = sampling.row_rng(42, 0)
    for _ in range(30):
        logits = (rng.standard_normal(51200) * scale).astype(np.float32)
        scaled = logits / np.float32(0.8)
        kept = full_sort_nucleus(scaled, 0.9)
        expected = int(kept[sampling.draw(sampling.softmax(scaled[kept]), reference_rng)])
        assert row.choose(logits)[0] == expected
