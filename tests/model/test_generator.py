import re
import shutil
import threading
import time

import pytest

from kogpt2.model import (
    DEFAULT_TOTAL_TOKENS,
    GenerationParams,
    Generator,
    InvalidInput,
    ModelLoadError,
    ModelLoading,
)
from kogpt2.model import engines as engine_kinds

TITLE = "근육이 커지기 위해서는"
HANGUL = re.compile("[가-힣]")


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return Generator(str(tiny_model_dir), engine="transformers", threads=1)


def test_continues_the_title_in_korean(generator):
    result = generator.generate(TITLE)
    text = result.sequences[0].text
    assert text.startswith(TITLE)
    assert HANGUL.search(text[len(TITLE):]), text
    assert result.engine == "transformers" and result.seed is None


def test_default_length_is_the_original_handlers_90_tokens(generator):
    result = generator.generate(TITLE)  # the tiny stand-in writes no </s> before 90 tokens
    assert result.finish_reason == "length"
    assert result.prompt_tokens + result.generated_tokens == DEFAULT_TOTAL_TOKENS


def test_greedy_is_deterministic(generator):
    assert generator.generate(TITLE).sequences == generator.generate(TITLE).sequences


def test_seed_makes_sampling_reproducible(generator):
    params = GenerationParams(do_sample=True, seed=1234, max_new_tokens=30, temperature=1.5)
    first, second = generator.generate(TITLE, params), generator.generate(TITLE, params)
    assert first.sequences == second.sequences and first.seed == 1234
    other = generator.generate(TITLE, params.model_copy(update={"seed": 4321}))
    assert other.sequences != first.sequences


def test_sampling_without_seed_reports_one_that_reproduces_it(generator):
    params = GenerationParams(do_sample=True, max_new_tokens=30)
    first = generator.generate(TITLE, params)
    assert isinstance(first.seed, int)
    again = generator.generate(TITLE, params.model_copy(update={"seed": first.seed}))
    assert again.sequences == first.sequences


def test_several_sequences(generator):
    params = GenerationParams(do_sample=True, seed=7, num_return_sequences=3, max_new_tokens=20)
    result = generator.generate(TITLE, params)
    assert len(result.sequences) == 3
    assert all(s.text.startswith(TITLE) for s in result.sequences)
    assert len({s.text for s in result.sequences}) > 1


def test_several_sequences_need_sampling():
    with pytest.raises(ValueError, match="do_sample"):
        GenerationParams(num_return_sequences=2)


def test_max_new_tokens_is_honoured(generator):
    result = generator.generate(TITLE, GenerationParams(max_new_tokens=5))
    assert (result.generated_tokens, result.finish_reason) == (5, "length")


def test_deadline_stops_a_long_generation(generator, slow_tokens):
    generator.load()  # 200 tokens now take at least 2 s
    params = GenerationParams(max_new_tokens=200, repetition_penalty=1.0)
    result = generator.generate(TITLE, params, deadline=time.monotonic() + 0.05)
    assert result.finish_reason == "time"
    assert 1 <= result.generated_tokens < 200


def test_server_cap_and_position_limit(tiny_model_dir):
    generator = Generator(str(tiny_model_dir), engine="transformers", max_new_tokens=100)
    with pytest.raises(InvalidInput, match="at most 100"):
        generator.generate(TITLE, GenerationParams(max_new_tokens=101))
    big = Generator(str(tiny_model_dir), engine="transformers", max_new_tokens=1023)
    with pytest.raises(InvalidInput, match="1024 positions"):
        big.generate(TITLE * 20, GenerationParams(max_new_tokens=1000))


def test_blank_and_overlong_text_are_refused(generator):
    with pytest.raises(InvalidInput):
        generator.generate("   ")
    with pytest.raises(InvalidInput):
        generator.generate("가" * 1001)


def test_concurrent_first_calls_load_once(tiny_model_dir, monkeypatch):
    real_load = engine_kinds.load
    calls = []

    def slow_load(*args, **kwargs):
        calls.append(args)
        time.sleep(0.3)  # widen the window in which a second load could start
        return real_load(*args, **kwargs)

    monkeypatch.setattr("kogpt2.model.engines.load", slow_load)
    generator = Generator(str(tiny_model_dir), engine="transformers")
    barrier = threading.Barrier(16)
    engines = []

    def first_call():
        barrier.wait()
        engines.append(generator.load())

    threads = [threading.Thread(target=first_call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and generator.load_count == 1
    assert len(engines) == 16 and len({id(e) for e in engines}) == 1


def test_load_failure_is_kept_visible_then_recovers(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    generator = Generator(str(model_dir), engine="transformers", load_retry_s=0)
    with pytest.raises(ModelLoadError, match="does not exist"):
        generator.generate(TITLE)
    assert not generator.loaded and "does not exist" in generator.last_load_error
    shutil.copytree(tiny_model_dir, model_dir)
    assert generator.generate(TITLE).sequences[0].text.startswith(TITLE)
    assert generator.last_load_error is None


def test_a_recent_failure_is_not_retried_at_once(tiny_model_dir, monkeypatch):
    calls = []

    def failing_load(*args, **kwargs):
        calls.append(args)
        raise ModelLoadError("broken")

    monkeypatch.setattr("kogpt2.model.engines.load", failing_load)
    generator = Generator(str(tiny_model_dir), engine="transformers", load_retry_s=60)
    for _ in range(3):
        with pytest.raises(ModelLoadError):
            generator.load()
    assert len(calls) == 1


def test_corrupt_weights_give_a_load_error(tiny_model_dir, tmp_path):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (model_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError):
        Generator(str(model_dir), engine="transformers").load()


def test_unreachable_hub_fails_fast_with_the_reason(monkeypatch, unused_port):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{unused_port}")
    started = time.monotonic()
    generator = Generator("kogpt2-tests/not-in-any-cache")
    with pytest.raises(ModelLoading):
        generator.load()  # the download runs in the background
    with pytest.raises(ModelLoadError, match="hub .* can't be reached"):
        generator.load(wait=True)
    assert time.monotonic() - started < 10
    assert generator.state == "failed"
