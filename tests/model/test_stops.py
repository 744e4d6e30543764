"""Stop texts: found in the decoded text (across tokens), cut before, generation ends there."""

import threading

import pytest

from kogpt2.model import GenerationParams, Generator
from kogpt2.model.stops import EarlyStop, cut_at_stop, first_stop, held_back, sendable

TITLE = "근육이 커지기 위해서는"
PIECES = {1: " 근육", 2: "을", 3: " 키우", 4: "려면", 5: " 단백질"}


def decode(ids):
    return "".join(PIECES[i] for i in ids)


def test_first_stop_is_the_earliest_of_any():
    assert first_stop("abcabc", ["c", "b"]) == 1
    assert first_stop("abc", ["x"]) is None


def test_a_stop_text_spanning_tokens_is_cut_before_and_counts_the_tokens_it_took():
    # "을 키" ends inside token 3: three tokens complete it.
    assert cut_at_stop(decode, [1, 2, 3, 4, 5], ["을 키"]) == (" 근육", 3, "을 키")
    assert cut_at_stop(decode, [1, 2, 3, 4, 5], ["려면", " 근"]) == ("", 1, " 근")
    assert cut_at_stop(decode, [1, 2, 3], [" 근육을", " 근"]).stop == " 근육을"  # the first given
    assert cut_at_stop(decode, [1, 2, 3], ["단백질"]) is None


@pytest.mark.parametrize(("text", "stops", "held"), [
    (" 근육을 키", ["키우다"], 1),  # "키" may become "키우다"
    (" 근육을 키우", ["키우다", "을 키우고"], 4),
    (" 근육을", ["다음"], 0),
    ("", ["다음"], 0),
    ("다음", ["다음"], 0),  # a whole stop text is found, not held
])
def test_a_stream_holds_back_what_could_start_a_stop_text(text, stops, held):
    assert held_back(text, stops) == held


def test_a_stream_sends_what_stands_before_any_stop_text():
    assert sendable(" 근육을 키", ["키우다"]) == " 근육을 "
    assert sendable(" 근육을 키우다 보면", ["키우다"]) == " 근육을 "
    assert sendable(" 근육을", []) == " 근육을"


def test_early_stop_sets_at_the_completing_token_and_passes_tokens_on():
    heard, cancel = [], threading.Event()
    early = EarlyStop(decode, ["을 키"], cancel, lambda token, _: heard.append(token))
    for token in (1, 2):
        early.hear(token)
        assert not early.is_set()
    early.hear(3)
    assert early.is_set() and heard == [1, 2, 3]
    caller_cancels = EarlyStop(decode, ["없음"], cancel)
    assert not caller_cancels.is_set()
    cancel.set()
    assert caller_cancels.is_set()


MODEL_DIRS = {"transformers": "tiny_model_dir", "ctranslate2": "tiny_ct2_dir",
              "openvino": "tiny_ov_dir"}


@pytest.fixture(scope="module", params=MODEL_DIRS)
def generator(request):
    directory = request.getfixturevalue(MODEL_DIRS[request.param])
    return Generator(str(directory), engine=request.param, threads=1)


def spanning_stop(generator, prompt_ids, new_ids, at: int) -> str:
    """A stop text made of the end of token `at - 1` and the start of token `at` (1-based)."""
    before = generator.continuation(prompt_ids, new_ids[: at - 1])
    upto = generator.continuation(prompt_ids, new_ids[:at])
    assert len(upto) > len(before) >= 1
    return before[-1] + upto[len(before)]


def test_generation_stops_at_the_token_that_completes_a_stop_text(generator):
    params = GenerationParams(max_new_tokens=20)
    heard = []
    full = generator.generate(TITLE, params, on_token=lambda token, _: heard.append(token))
    assert full.sequences[0].generated_tokens == 20, "the stand-in ended early; pick a title"
    prompt = generator.check(TITLE, params)
    stop = spanning_stop(generator, prompt.ids, heard, at=6)
    continuation = full.sequences[0].text[len(TITLE):]
    assert stop in continuation
    heard_with_stop = []
    result = generator.run(prompt, stop=(stop,),
                           on_token=lambda token, _: heard_with_stop.append(token))
    (sequence,) = result.sequences
    assert sequence.finish_reason == "stop"
    assert sequence.text == TITLE + continuation[: continuation.index(stop)]
    # The engine stopped at the token that completed the stop text: nothing was made past it.
    needed = next(k for k in range(1, 21) if stop in generator.continuation(prompt.ids, heard[:k]))
    assert needed <= 6
    assert sequence.generated_tokens == len(heard_with_stop) == needed


def test_each_sampled_sequence_is_cut_at_its_own_stop_text(generator):
    params = GenerationParams(do_sample=True, seed=11, num_return_sequences=3, max_new_tokens=24)
    plain = generator.generate(TITLE, params).sequences
    stop = plain[0].text[len(TITLE):][8:10]  # in the first sequence, maybe in the others
    cut = generator.generate(TITLE, params, stop=(stop,)).sequences
    assert cut[0].finish_reason == "stop"
    for before, after in zip(plain, cut, strict=True):
        continuation = before.text[len(TITLE):]
        if stop in continuation:
            assert after.text == TITLE + continuation[: continuation.index(stop)]
            assert after.finish_reason == "stop"
        else:  # the first sequence's stop text did not end the others early
            assert after == before
