"""Continuous batching on the openvino engine: requests share each step, and each row's text is
what it gets alone.

On float32 (f32 compute) a row's tokens beside others are exactly its tokens alone; these tests
hold the engine to that. int8 computes a row a little differently beside others: bench/serving.py
measures how often that changes a token.
"""

import threading
import time

import pytest

from kogpt2.model import engines
from kogpt2.model.params import GenerationParams
from kogpt2.model.seam import EngineRequest, Watch
from kogpt2.model.vocab import load_tokenizer

TITLES = ["근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "서울",
          "바다가 보이는 작은 마을에서"]
# What differs between rows: greedy or sampled, the penalty, top-k/top-p, n, logprobs.
KINDS = [
    GenerationParams(),
    GenerationParams(repetition_penalty=1.0),
    GenerationParams(do_sample=True, top_k=0, top_p=0.9, num_return_sequences=2),
    GenerationParams(do_sample=True, temperature=0.7, top_k=20, logprobs=2),
]


@pytest.fixture(scope="module")
def engine(tiny_ov_float32_dir):
    return engines.load(engines.OPENVINO, tiny_ov_float32_dir, threads=1, compute_type="f32")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def request(tokenizer, title, params, *, max_new_tokens=16, seed=7, watch=None):
    ids = tokenizer.encode(title, add_special_tokens=False).ids
    return EngineRequest(ids, max_new_tokens, params, seed if params.do_sample else None,
                         watch or Watch())


def texts(result):
    return [(row.token_ids, row.finish_reason) for row in result.rows]


def logprobs(results):
    return [t.logprob for result in results for row in result.rows for t in row.logprobs or []]


def alone(engine, req, *, results=None):
    [result] = engine.generate([EngineRequest(req.prompt_ids, req.max_new_tokens, req.params,
                                              req.seed, Watch())])
    if results is not None:
        results.append(result)
    return texts(result)


def in_threads(engine, requests):
    """Each request from its own thread, all at once; their results in order."""
    results = [None] * len(requests)

    def call(i):
        [results[i]] = engine.generate([requests[i]])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_rows_with_different_parameters_in_one_batch_each_write_their_own_text(engine,
                                                                                  tokenizer):
    requests = [request(tokenizer, title, params)
                for title, params in zip(TITLES, KINDS, strict=True)]
    single: list = []
    expected = [alone(engine, req, results=single) for req in requests]
    for together in (engine.generate(requests), in_threads(engine, requests)):
        assert [texts(result) for result in together] == expected
        # float32 beside others: the same log-probabilities within float rounding
        assert logprobs(together) == pytest.approx(logprobs(single), abs=1e-6)
    assert len({str(rows) for rows in expected}) == len(expected)
    assert len(logprobs(single)) == 16


def test_a_request_joining_mid_generation_gets_the_text_it_gets_alone(engine, tokenizer):
    first = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=30)
    newcomer = request(tokenizer, TITLES[3], KINDS[2], max_new_tokens=10)
    expected = [alone(engine, first), alone(engine, newcomer)]
    heard_first: list[int] = []
    first_had_when_newcomer_began: list[int] = []

    def on_first(token, _):
        heard_first.append(token)
        if len(heard_first) == 3:  # hold the batch until the newcomer waits to join
            until = time.monotonic() + 10
            while engine.stats()["rows_waiting"] == 0 and time.monotonic() < until:
                time.sleep(0.005)

    def on_newcomer(token, _):
        if not first_had_when_newcomer_began:
            first_had_when_newcomer_began.append(len(heard_first))

    first = EngineRequest(first.prompt_ids, 30, first.params, None, Watch(on_token=on_first))
    newcomer = EngineRequest(newcomer.prompt_ids, 10, newcomer.params, newcomer.seed,
                             Watch(on_token=on_newcomer))
    results = [None, None]

    def run_first():
        [results[0]] = engine.generate([first])

    thread = threading.Thread(target=run_first)
    thread.start()
    while len(heard_first) < 3:
        time.sleep(0.001)
    [results[1]] = engine.generate([newcomer])
    thread.join(60)
    # It joined while the first was writing: it read its title a token a step beside it.
    assert 3 <= first_had_when_newcomer_began[0] < 30
    assert [texts(result) for result in results] == expected


def test_one_rows_cancel_and_anothers_deadline_leave_the_others_going(engine, tokenizer):
    cancel = threading.Event()

    def cancel_after_two(token, _, heard=[]):  # noqa: B006 (this test's own counter)
        heard.append(token)
        if len(heard) == 2:
            cancel.set()

    going = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=24)
    cancelled = request(tokenizer, TITLES[1], KINDS[1], max_new_tokens=24,
                        watch=Watch(cancel=cancel, on_token=cancel_after_two))
    timed_out = request(tokenizer, TITLES[2], KINDS[0], max_new_tokens=24,
                        watch=Watch(deadline=time.monotonic() - 1))
    expected = alone(engine, going)
    results = engine.generate([going, cancelled, timed_out])
    assert texts(results[0]) == expected
    assert [(len(row.token_ids), row.finish_reason) for row in results[1].rows] == [
        (2, "cancelled")]
    # Its deadline passed before it had a place: its title is never read, and it ends empty.
    assert [(len(row.token_ids), row.finish_reason) for row in results[2].rows] == [(0, "time")]


def test_each_stream_hears_its_own_tokens_in_order(engine, tokenizer):
    heard: dict[int, list[int]] = {i: [] for i in range(3)}
    requests = [
        request(tokenizer, TITLES[i], KINDS[i],
                watch=Watch(on_token=lambda token, _, i=i: heard[i].append(token)))
        for i in range(3)
    ]
    results = in_threads(engine, requests)
    for i, result in enumerate(results):
        row = result.rows[0]
        ended = [row.end_token_id] if row.end_token_id is not None else []
        assert heard[i] == row.token_ids + ended


def test_seeded_sampling_is_the_same_whatever_shares_the_batch(engine, tokenizer):
    sampled = request(tokenizer, TITLES[1], KINDS[2], seed=11)
    expected = alone(engine, sampled)
    for company in ([], KINDS[:2], KINDS[2:] * 2):
        others = [request(tokenizer, TITLES[0], params, seed=3) for params in company]
        results = engine.generate([*others, sampled])
        assert texts(results[-1]) == expected


def test_rows_beyond_the_cap_wait_for_a_place(tiny_ov_float32_dir, tokenizer):
    engine = engines.load(engines.OPENVINO, tiny_ov_float32_dir, threads=1, compute_type="f32",
                          max_rows=2)
    seen: list[dict] = []
    requests = [
        request(tokenizer, title, KINDS[0], max_new_tokens=6,
                watch=Watch(on_token=lambda *_: seen.append(engine.stats())))
        for title in TITLES[:3]
    ]
    expected = [alone(engine, req) for req in requests]
    assert [texts(result) for result in engine.generate(requests)] == expected
    assert max(stats["rows_running"] for stats in seen) == 2
    assert seen[0]["rows_waiting"] == 1 and seen[-1]["rows_waiting"] == 0
    assert engine.stats() == {"rows_running": 0, "rows_waiting": 0, "max_rows": 2}


# --- a scheduler that fails (issue 23, 13): nobody waits on a dead loop ---


def within(seconds, function, *args):
    """function(*args) in a thread: what it returned or raised, failing the test if it is still
    running after `seconds` (a request hanging on a dead scheduler)."""
    outcome = []

    def run():
        try:
            outcome.append(function(*args))
        except Exception as exc:  # what it raised is the outcome
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0]


@pytest.fixture
def fresh_engine(tiny_ov_float32_dir):
    return engines.load(engines.OPENVINO, tiny_ov_float32_dir, threads=1, compute_type="f32")


def test_a_failure_in_the_scheduler_fails_its_jobs_and_the_next_request_starts_it_again(
        fresh_engine, tokenizer, monkeypatch):
    from kogpt2.model.engines import openvino

    req = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=6)
    expected = alone(fresh_engine, req)
    admit = fresh_engine._admit

    def broken():
        raise RuntimeError("admission broke")

    monkeypatch.setattr(fresh_engine, "_admit", broken)
    failed = within(10, fresh_engine.generate, [req])
    assert isinstance(failed, RuntimeError) and str(failed) == "admission broke"
    assert fresh_engine.failure == "admission broke"
    monkeypatch.setattr(openvino, "FAILED_FOR_S", 0.0)  # held that long: a request may try
    assert fresh_engine.failure is None
    monkeypatch.setattr(openvino, "FAILED_FOR_S", 30.0)
    assert fresh_engine.failure == "admission broke"
    monkeypatch.setattr(fresh_engine, "_admit", admit)
    [result] = within(10, fresh_engine.generate, [req])
    assert texts(result) == expected and fresh_engine.failure is None


def test_a_scheduler_that_cannot_start_fails_the_request_and_the_next_one_starts_it(
        fresh_engine, tokenizer, monkeypatch):
    req = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=6)
    start = threading.Thread.start

    def no_thread(thread):
        if thread.name == "openvino-batch":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    failed = within(10, fresh_engine.generate, [req])
    assert isinstance(failed, RuntimeError) and "can't start new thread" in str(failed)
    assert fresh_engine.failure == "can't start new thread"
    monkeypatch.setattr(threading.Thread, "start", start)
    [result] = within(10, fresh_engine.generate, [req])
    assert len(result.rows[0].token_ids) == 6 and fresh_engine.failure is None


def test_a_scheduler_gone_without_a_word_fails_who_waits_on_it(fresh_engine, tokenizer,
                                                               monkeypatch):
    from kogpt2.model.engines import openvino

    monkeypatch.setattr(openvino, "WATCHDOG_S", 0.05, raising=False)
    monkeypatch.setattr(fresh_engine, "_loop", lambda: None)  # ends at once, having done nothing
    req = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=6)
    failed = within(10, fresh_engine.generate, [req])
    assert isinstance(failed, RuntimeError) and "scheduler stopped" in str(failed)
    monkeypatch.undo()
    [result] = within(10, fresh_engine.generate, [req])
    assert len(result.rows[0].token_ids) == 6


def test_a_job_whose_deadline_passed_while_it_waited_is_never_read(
        tiny_ov_float32_dir, tokenizer, slow_tokens, monkeypatch):
    engine = engines.load(engines.OPENVINO, tiny_ov_float32_dir, threads=1, compute_type="f32",
                          max_rows=1)
    fed: list[list[int]] = []  # what each step fed, but the fillers' tokens
    forward = engine._forward

    def recording(plan):
        fed.extend(tokens for sequence, tokens, _ in plan if sequence not in engine._fillers)
        return forward(plan)

    monkeypatch.setattr(engine, "_forward", recording)
    first = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=30)  # 30 steps: >= 0.3 s
    late = request(tokenizer, TITLES[1], KINDS[0], max_new_tokens=8,
                   watch=Watch(deadline=time.monotonic() + 0.1))
    running = threading.Thread(target=engine.generate, args=([first],))
    running.start()
    [result] = within(30, engine.generate, [late])
    running.join(30)
    assert [(row.token_ids, row.finish_reason) for row in result.rows] == [([], "time")]
    assert late.prompt_ids not in fed and first.prompt_ids in fed


def test_a_long_title_is_read_in_parts_beside_the_others_decoding(engine, tokenizer,
                                                                  monkeypatch):
    """A 700-token title, scored (lm-eval's loglikelihood), comes while a request decodes: it
    is read a few hundred tokens a step (parts that end at cache blocks' ends), the decoding
    row writes a token in each of those steps, and both get what they get alone."""
    from kogpt2.model.engines import openvino

    decoding = request(tokenizer, TITLES[0], KINDS[0], max_new_tokens=12)
    long_ids = [(7 * i) % 500 + 10 for i in range(700)]
    scoring = EngineRequest(long_ids, 0, GenerationParams(prompt_logprobs=1), None, Watch())
    [scored_alone] = engine.generate([scoring])
    expected = alone(engine, decoding)
    steps: list[list[int]] = []  # each step: the tokens each of its sequences fed
    forward = engine._forward

    def recording(plan):
        steps.append([len(tokens) for sequence, tokens, _ in plan
                      if sequence not in engine._fillers])
        return forward(plan)

    monkeypatch.setattr(engine, "_forward", recording)
    heard = []

    def on_token(token, _):
        heard.append(token)
        if len(heard) == 2:  # hold the decoding until the long title waits to be read
            until = time.monotonic() + 10
            while engine.stats()["rows_waiting"] == 0 and time.monotonic() < until:
                time.sleep(0.005)

    decoding = EngineRequest(decoding.prompt_ids, 12, decoding.params, None,
                             Watch(on_token=on_token))
    results = [None]
    thread = threading.Thread(target=lambda: results.__setitem__(0, engine.generate([decoding])))
    thread.start()
    while len(heard) < 2:
        time.sleep(0.001)
    [scored] = engine.generate([EngineRequest(long_ids, 0, scoring.params, None, Watch())])
    thread.join(60)
    assert texts(results[0][0]) == expected
    assert [(s.token_id, s.logprob) for s in scored.prompt_logprobs[1:]] == [
        (s.token_id, s.logprob) for s in scored_alone.prompt_logprobs[1:]]
    parts = [fed for fed in steps if max(fed) > len(decoding.prompt_ids)]  # the long title's
    assert len(parts) == 3 and sum(max(fed) for fed in parts) == 700
    assert all(fed.count(1) == 1 and max(fed) <= openvino.STEP_TOKENS for fed in parts)
    assert all(max(fed) % openvino.BLOCK == 0 for fed in parts[:-1])
