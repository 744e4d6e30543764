"""A failed load heals: tried again after a doubling delay, by itself once started; a stored
failure is raised as a new exception; a prepared copy that fails to load is prepared again,
once."""

import logging
import shutil
import time
import traceback

import pytest

from kogpt2.model import Generator, ModelLoadError, ModelLoading, engines, prepare
from kogpt2.model.source import local_source

TITLE = "근육이 커지기 위해서는"


class Clock:
    """time for kogpt2.model.lifecycle: monotonic() only moves when told."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        time.sleep(seconds)


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr("kogpt2.model.lifecycle.time", fake)
    return fake


def attempts(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kogpt2.model.lifecycle" and "attempt" in r.getMessage()]


def test_a_stored_failure_is_raised_as_a_new_exception_each_time(tmp_path):
    generator = Generator(str(tmp_path / "missing"), engine="transformers", load_retry_s=60)
    raised = []
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="does not exist") as caught:
            generator.load()
        raised.append(caught.value)
    assert len({id(error) for error in raised}) == 3
    # The stored one is not raised again and again: its traceback doesn't grow by each raise.
    second, third = (len(traceback.extract_tb(e.__traceback__)) for e in raised[1:])
    assert second == third


def test_each_failure_waits_twice_as_long_up_to_the_cap(tmp_path, clock, caplog):
    caplog.set_level(logging.INFO, "kogpt2.model.lifecycle")
    generator = Generator(str(tmp_path / "missing"), engine="transformers",
                          load_retry_s=10, load_retry_max_s=25)
    waits = []
    for _ in range(4):
        with pytest.raises(ModelLoadError):
            generator.load()
        waits.append(generator.retry_in_s)
        clock.now += waits[-1] - 0.1
        with pytest.raises(ModelLoadError):  # not yet due: refused without an attempt
            generator.load()
        clock.now += 0.1
    assert waits == [10, 20, 25, 25]
    lines = attempts(caplog)
    assert len(lines) == 4  # one line per attempt, none for the refusals in between
    assert lines[0].startswith("the model could not be loaded (attempt 1): model directory")
    assert lines[0].endswith("it is tried again by the next caller in 10 s")
    assert lines[3].startswith("the model could not be loaded (attempt 4)")
    assert generator.state == "failed" and "does not exist" in generator.last_load_error


def test_a_started_generator_becomes_ready_by_itself(tiny_model_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, "kogpt2.model.lifecycle")
    model = tmp_path / "model"
    generator = Generator(str(model), engine="transformers", threads=1, load_retry_s=0.2,
                          load_retry_max_s=1)
    generator.start()
    generator.start()  # a second call starts nothing more
    deadline = time.monotonic() + 30
    while generator.state != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shutil.copytree(tiny_model_dir, model)
    while not generator.loaded:  # nobody calls load() or generate(): it loads by itself
        assert time.monotonic() < deadline, attempts(caplog)
        time.sleep(0.05)
    lines = attempts(caplog)
    failures = [line for line in lines if "could not be loaded" in line]
    assert failures and all("tried again by itself" in line for line in failures)
    assert lines[-1].startswith("the model is ready: transformers engine, 1 threads")
    assert lines[-1].endswith(f"attempt {len(failures) + 1}")
    assert generator.load_count == 1 and generator.last_load_error is None
    assert generator.generate(TITLE).sequences[0].text.startswith(TITLE)


@pytest.fixture
def seeded_cache(tiny_model_dir, tiny_ov_dir, tmp_path):
    """A cache holding the tiny stand-in's prepared OpenVINO int8 copy (scripts/convert.py
    writes what prepare() writes), and a fast stand-in for prepare() that copies it again."""
    cache = tmp_path / "cache"
    name = prepare.entry_name(local_source(str(tiny_model_dir)), engines.OPENVINO, "int8")
    shutil.copytree(tiny_ov_dir, cache / name)
    return cache, cache / name


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.skipif(not engines.OPENVINO.installed(), reason="needs openvino")
def test_a_truncated_prepared_copy_is_set_aside_prepared_again_and_served(
        tiny_model_dir, tiny_ov_dir, seeded_cache, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    cache, entry = seeded_cache
    truncate(entry / "openvino_model.bin")
    prepared = []

    def quick_prepare(source, kind, weight_format, cache_root, report):
        prepared.append(kind.name)
        shutil.copytree(tiny_ov_dir, entry)
        return entry

    monkeypatch.setattr(prepare, "prepare", quick_prepare)
    generator = Generator(str(tiny_model_dir), engine="openvino", threads=1, cache_dir=cache)
    with pytest.raises(ModelLoading):
        generator.load()  # the damaged copy is found at once; the new one is made behind
    generator.load(wait=True)
    assert prepared == ["openvino"]
    assert generator.generate(TITLE).engine == "openvino"
    aside = entry.with_name(entry.name + ".broken")
    assert (aside / "openvino_model.bin").stat().st_size < (
        entry / "openvino_model.bin").stat().st_size
    [line] = [r.getMessage() for r in caplog.records if "failed to load" in r.getMessage()]
    assert "openvino_model.bin is " in line and f"moved to {aside}" in line


@pytest.mark.skipif(not engines.OPENVINO.installed(), reason="needs openvino")
def test_a_copy_that_fails_again_is_not_prepared_a_third_time(
        tiny_model_dir, tiny_ov_dir, seeded_cache, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    cache, entry = seeded_cache
    prepared = []

    def quick_prepare(source, kind, weight_format, cache_root, report):
        prepared.append(kind.name)
        shutil.copytree(tiny_ov_dir, entry)
        return entry

    def broken_load(*args, **kwargs):
        raise RuntimeError("the engine can't read it")

    monkeypatch.setattr(prepare, "prepare", quick_prepare)
    monkeypatch.setattr(engines, "load", broken_load)
    generator = Generator(str(tiny_model_dir), engine="openvino", threads=1, cache_dir=cache,
                          load_retry_s=0)
    with pytest.raises(ModelLoading):
        generator.load()
    with pytest.raises(ModelLoadError, match="the engine can't read it"):
        generator.load(wait=True)
    assert generator.state == "failed"
    with pytest.raises(ModelLoadError, match="the engine can't read it"):
        generator.load(wait=True)  # the next attempt loads the entry, and sets nothing aside
    assert prepared == ["openvino"]
    set_aside = [r for r in caplog.records if "failed to load" in r.getMessage()]
    failed = [r for r in caplog.records if "could not be loaded" in r.getMessage()]
    assert len(set_aside) == 1 and len(failed) == 2
    assert "the engine can't read it" in failed[0].getMessage()


def test_threads_follow_the_setting_or_the_cpus_and_workers(tiny_model_dir):
    assert Generator(str(tiny_model_dir), threads=3).threads == 3
    one = Generator(str(tiny_model_dir), workers=1)
    many = Generator(str(tiny_model_dir), workers=64)
    assert many.threads == 1 and one.threads >= 1
    assert one.threads_reason.endswith("shared by 1 worker")


def test_a_thousand_failures_still_wait_the_capped_delay(tmp_path, clock):
    """The delay stops doubling at its cap: 2 ** 1024 seconds is past what a float holds."""
    generator = Generator(str(tmp_path / "missing"), engine="transformers", load_retry_s=0.5,
                          load_retry_max_s=2.0)  # as the settings give them: floats
    waits = []
    for _ in range(1100):
        with pytest.raises(ModelLoadError, match="does not exist"):
            generator.load()
        waits.append(generator.retry_in_s)
        clock.now += waits[-1]
    assert waits == [0.5, 1, 2] + [2] * 1097
    assert generator.state == "failed"


class InstantClock(Clock):
    """A clock whose sleep passes at once: the background loader's waits take no time."""

    def sleep(self, seconds):
        self.now += seconds
        time.sleep(0)


def test_a_started_generator_keeps_trying_past_a_thousand_failures(
        tiny_model_dir, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "kogpt2.model.lifecycle")
    monkeypatch.setattr("kogpt2.model.lifecycle.time", InstantClock())
    model = tmp_path / "model"
    generator = Generator(str(model), engine="transformers", threads=1, load_retry_s=0.5,
                          load_retry_max_s=2.0)
    generator.start()
    deadline = time.monotonic() + 120
    while not any("(attempt 1100)" in line for line in attempts(caplog)):
        assert time.monotonic() < deadline, attempts(caplog)[-1:]
        time.sleep(0.05)
    shutil.copytree(tiny_model_dir, model)
    while not generator.loaded:  # still trying by itself
        assert time.monotonic() < deadline, attempts(caplog)[-1:]
        time.sleep(0.05)
    assert generator.generate(TITLE).sequences[0].text.startswith(TITLE)
