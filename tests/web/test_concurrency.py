import threading
import time

import pytest
from answers import assert_error

from kogpt2.config import Settings
from kogpt2.web.limits import ConcurrencyLimit, Overloaded

TITLE = "근육이 커지기 위해서는"
FAR = float("inf")


def wait_until(condition, limit_s=10.0):
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition never came true"
        time.sleep(0.005)


def hold(limit, release: threading.Event, outcome=None):
    """Take a slot in a thread (waiting in the queue if need be) and keep it until `release`."""
    outcome = [] if outcome is None else outcome

    def run():
        try:
            with limit.slot(FAR):
                release.wait(10)
            outcome.append("ran")
        except Overloaded as exc:
            outcome.append(exc.status)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_full_queue_is_refused_at_once_with_retry_after():
    limit = ConcurrencyLimit(slots=1, queue_size=1, timeout_s=30)
    release, outcomes = threading.Event(), []
    holder = hold(limit, release)
    wait_until(lambda: limit.running == 1)
    waiter = hold(limit, release, outcome=outcomes)
    wait_until(lambda: limit.waiting == 1)
    with pytest.raises(Overloaded) as refused:
        with limit.slot(FAR):
            pass
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "30"
    release.set()
    holder.join(), waiter.join()
    assert outcomes == ["ran"]  # the queued request got its turn
    assert (limit.running, limit.waiting) == (0, 0)


def test_a_queued_request_gives_up_at_its_deadline():
    limit = ConcurrencyLimit(slots=1, queue_size=4, timeout_s=30)
    release = threading.Event()
    holder = hold(limit, release)
    wait_until(lambda: limit.running == 1)
    with pytest.raises(Overloaded, match="no generation slot"):
        with limit.slot(time.monotonic()):  # a deadline already reached: no wait at all
            pass
    release.set()
    holder.join()


def test_a_slot_is_given_back_when_the_work_raises():
    limit = ConcurrencyLimit(slots=1, queue_size=0, timeout_s=0)
    with pytest.raises(RuntimeError):
        with limit.slot(FAR):
            raise RuntimeError("generation failed")
    with limit.slot(FAR):
        assert limit.running == 1


def test_waiters_are_served_in_arrival_order():
    limit = ConcurrencyLimit(slots=1, queue_size=3, timeout_s=30)
    release, served = threading.Event(), []
    holder = hold(limit, release)
    wait_until(lambda: limit.running == 1)

    def wait_then_note(name):
        with limit.slot(FAR):
            served.append(name)

    waiters = []
    for count, name in enumerate("abc", start=1):
        waiters.append(threading.Thread(target=wait_then_note, args=(name,)))
        waiters[-1].start()
        wait_until(lambda count=count: limit.waiting == count)
    release.set()
    for thread in [holder, *waiters]:
        thread.join()
    assert served == ["a", "b", "c"]
    assert (limit.running, limit.waiting) == (0, 0)


def test_settings_read_the_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("KOGPT2_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("KOGPT2_QUEUE_SIZE", "0")
    monkeypatch.setenv("KOGPT2_QUEUE_TIMEOUT_S", "2.5")
    settings = Settings()
    assert (settings.max_concurrency, settings.queue_size, settings.queue_timeout_s) == (3, 0, 2.5)


def test_an_overloaded_server_answers_429_and_stays_healthy(make_app, hold_the_slot):
    app = make_app(max_concurrency=1, queue_size=0)
    client = app.test_client()
    assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).status_code == 200
    short = {"text": TITLE, "max_new_tokens": 1}
    with hold_the_slot(app, lambda other: other.post("/generate", json=short).status_code) as held:
        refused = client.post("/generate", json={"text": TITLE})
        assert refused.status_code == 429
        assert refused.get_json()["error_type"] == "overloaded"
        assert int(refused.headers["Retry-After"]) >= 1
        health = client.get("/health")
        assert health.status_code == 200 and health.get_json()["model_loaded"] is True
        assert client.get("/info").get_json()["concurrency"]["running"] == 1
    assert held == [200]
    assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).status_code == 200


def test_requests_the_model_cant_take_are_refused_before_they_queue(make_app, hold_the_slot):
    """422, not 429: a request over the limits never waits for, or takes, a slot."""
    app = make_app(max_concurrency=1, queue_size=0, max_new_tokens=1000)
    client = app.test_client()
    assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).status_code == 200
    short = {"text": TITLE, "max_new_tokens": 1}
    with hold_the_slot(app, lambda other: other.post("/generate", json=short)):
        assert client.post("/generate", json={"text": TITLE}).status_code == 429  # saturated
        over_cap = client.post("/generate", json={"text": TITLE, "max_new_tokens": 1001})
        assert "at most 1000" in assert_error(over_cap, 422, "validation_error")
        too_long = client.post("/generate", json={"text": TITLE * 40, "max_new_tokens": 1000})
        assert "1024 positions" in assert_error(too_long, 422, "validation_error")
        assert client.get("/info").get_json()["concurrency"]["waiting"] == 0


@pytest.mark.parametrize("breakage", ["weights_corrupt", "directory_missing"])
def test_requests_over_the_limits_get_422_when_the_model_cant_load(
    make_app, tiny_model_dir, tmp_path, breakage
):
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    if breakage == "weights_corrupt":
        (model / "model.safetensors").write_bytes(b"not a model")
    else:
        shutil.rmtree(model)
    client = make_app(model=str(model), max_new_tokens=1000).test_client()
    over_cap = client.post("/generate", json={"text": TITLE, "max_new_tokens": 1001})
    assert_error(over_cap, 422, "validation_error")
    if breakage == "weights_corrupt":  # the tokenizer is there: token limits are checked too
        too_long = client.post("/generate", json={"text": TITLE * 40, "max_new_tokens": 1000})
        assert "1024 positions" in assert_error(too_long, 422, "validation_error")
    assert_error(client.post("/generate", json={"text": TITLE}), 503, "model_unavailable")
    assert client.get("/info").get_json()["load_count"] == 0


def test_the_default_slots_follow_the_engines_row_cap(make_app, tiny_model_dir, tiny_ov_dir,
                                                      tiny_ct2_dir):
    """openvino and ctranslate2 decode concurrent requests together: as many generate at once
    as they have rows, and /info shows the engine's rows. transformers runs one at a time."""

    def info(model_dir, engine, **more):
        client = make_app(model=str(model_dir), engine=engine, **more).test_client()
        assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).status_code \
            == 200
        return client.get("/info").get_json()

    batched = info(tiny_ov_dir, "openvino")
    assert batched["concurrency"]["max_concurrency"] == 20
    assert batched["batch"] == {"rows_running": 0, "rows_waiting": 0, "max_rows": 20}
    assert info(tiny_ov_dir, "openvino", MAX_BATCH_ROWS=4)["batch"]["max_rows"] == 4
    assert info(tiny_ov_dir, "openvino", MAX_BATCH_ROWS=4)["concurrency"]["max_concurrency"] == 4
    shared = info(tiny_ct2_dir, "ctranslate2")
    assert shared["concurrency"]["max_concurrency"] == 8 and shared["batch"]["max_rows"] == 8
    # auto serves a prepared directory with its own engine: its cap, known before it loads
    assert info(tiny_ct2_dir, "auto")["concurrency"]["max_concurrency"] == 8
    alone = info(tiny_model_dir, "transformers")
    assert alone["concurrency"]["max_concurrency"] == 1 and alone["batch"]["max_rows"] == 1


def test_beyond_the_row_cap_requests_queue_then_get_429(make_app, hold_the_slot, tiny_ov_dir):
    app = make_app(model=str(tiny_ov_dir), engine="openvino", max_batch_rows=1, queue_size=0)
    client = app.test_client()
    short = {"text": TITLE, "max_new_tokens": 1}
    assert client.post("/generate", json=short).status_code == 200
    with hold_the_slot(app, lambda other: other.post("/generate", json=short).status_code) as held:
        refused = client.post("/generate", json=short)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert client.get("/info").get_json()["concurrency"] == {
            "max_concurrency": 1, "queue_size": 0, "queue_timeout_s": 5.0, "running": 1,
            "waiting": 0}
    assert held == [200]


def test_a_failed_openvino_scheduler_makes_ready_say_so_until_a_request_succeeds(
        make_app, tiny_ov_dir, monkeypatch):
    from kogpt2.web.state import EXTENSION

    app = make_app(model=str(tiny_ov_dir), engine="openvino")
    client = app.test_client()
    short = {"text": TITLE, "max_new_tokens": 2}
    assert client.post("/generate", json=short).status_code == 200
    assert client.get("/ready").status_code == 200
    engine = app.extensions[EXTENSION].engine

    def broken(*args, **kwargs):
        raise RuntimeError("the model call failed")

    monkeypatch.setattr(engine, "_infer", broken)
    assert_error(client.post("/generate", json=short), 500, "internal_error")
    ready = client.get("/ready")
    assert ready.status_code == 503 and int(ready.headers["Retry-After"]) >= 1
    assert ready.get_json()["model_state"] == "failed"
    assert client.get("/health").status_code == 200  # alive: the next request starts it again
    monkeypatch.undo()
    assert client.post("/generate", json=short).status_code == 200
    assert client.get("/ready").get_json() == {"ready": True, "model_state": "ready",
                                               "progress": None}
