"""Streams through gunicorn: events as they are made, a client that goes away, Hangul intact."""

import json

import pytest
from events import split_stream
from live_server import access_line, get_json, open_stream, post_json

TITLE = "근육이 커지기 위해서는"
HANGUL_ONLY_TITLES = ["가나다라", "서울의봄은", "김치찌개를끓이려면"]
LONG = {"max_new_tokens": 1000, "repetition_penalty": 1.0}  # no EOS on the stand-ins
# Each engine's model dir, by the name of the conftest fixture that builds it on the tiny
# stand-in; an engine added to the app is added here.
ENGINES = {"transformers": "tiny_model_dir", "ctranslate2": "tiny_ct2_dir",
           "openvino": "tiny_ov_dir"}


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("gunicorn") / "stderr.log"


@pytest.fixture(scope="module")
def server(live_server, server_log):
    # No queue: a request that finds the slot taken is refused at once, not served later.
    with live_server(log=server_log, queue_size=0, max_new_tokens=1000) as base:
        post_json(f"{base}/generate", {"text": TITLE, "max_new_tokens": 1})  # load the model
        yield base


def read_stream(base, body, request_id=None):
    headers = {"X-Request-ID": request_id} if request_id else {}
    with open_stream(f"{base}/generate", body, headers) as response:
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        return [event for _, event in response.events()]


def test_events_join_to_the_final_text(server, server_log):
    events = read_stream(server, {"text": TITLE, "max_new_tokens": 60}, "joined")
    tokens, last = split_stream(events)
    assert TITLE + "".join(t["text"] for t in tokens) == last["generated_text"]
    assert len(tokens) == last["details"]["generated_tokens"] == 60
    line = access_line(server_log, "joined")
    assert (line["status"], line["tokens"], line["finish_reason"]) == (200, 60, "length")
    assert "cancelled" not in line and TITLE not in json.dumps(line, ensure_ascii=False)


@pytest.mark.parametrize("engine", ENGINES)
def test_greedy_streamed_is_greedy_not_streamed_on_every_engine(live_server, request, engine):
    model_dir = request.getfixturevalue(ENGINES[engine])
    body = {"text": TITLE, "max_new_tokens": 40, "repetition_penalty": 1.2}
    with live_server(model=str(model_dir), engine=engine) as base:
        _, plain = post_json(f"{base}/generate", body)
        tokens, last = split_stream(read_stream(base, body))
    assert last["details"]["engine"] == engine
    assert TITLE + "".join(t["text"] for t in tokens) == plain["generated_text"]
    assert len(tokens) == plain["details"]["generated_tokens"] - (
        plain["details"]["finish_reason"] == "eos")
    # The last event is the non-streamed answer itself, but for the time it took.
    for answer in (last, plain):
        answer["details"].pop("time_ms")
    assert last == plain


@pytest.mark.parametrize("title", HANGUL_ONLY_TITLES)
def test_a_hangul_only_title_never_yields_a_broken_character(server, title):
    for seed in range(3):
        body = {"text": title, "do_sample": True, "seed": seed, "max_new_tokens": 80}
        tokens, last = split_stream(read_stream(server, body))
        assert all("\ufffd" not in t["text"] for t in tokens)
        assert title + "".join(t["text"] for t in tokens) == last["generated_text"]


def test_a_client_going_away_cancels_the_generation_and_frees_the_slot(server, server_log):
    body = {"text": TITLE, **LONG}
    with open_stream(f"{server}/generate", body, {"X-Request-ID": "gone"}) as response:
        events = response.events()
        first_two = [next(events)[1], next(events)[1]]
    assert all("token" in event for event in first_two)
    # The server notices on its next write or two, and the generation stops within a token.
    line = access_line(server_log, "gone")
    assert line["cancelled"] is True and line["finish_reason"] == "cancelled"
    assert 2 <= line["tokens"] < 1000 and line["status"] == 200
    assert get_json(f"{server}/info")["concurrency"]["running"] == 0
    # With no queue, a request that found the slot still held would be refused with 429.
    status, answer = post_json(f"{server}/generate", {"text": TITLE, "max_new_tokens": 5})
    assert status == 200 and answer["details"]["generated_tokens"] == 5


def test_a_stream_read_to_its_end_is_not_cancelled(server, server_log):
    tokens, last = split_stream(read_stream(server, {"text": TITLE, **LONG}, "whole"))
    assert last["details"]["finish_reason"] == "length" and len(tokens) == 1000
    line = access_line(server_log, "whole")
    assert "cancelled" not in line and line["tokens"] == 1000
    assert get_json(f"{server}/info")["concurrency"]["running"] == 0


def test_the_first_token_arrives_well_before_the_last(live_server, full_size_model_dir):
    """On the full-size stand-in (transformers, ~0.1 s a token on 2 cores), where a generation
    lasts long enough to tell a stream from an answer sent whole at the end."""
    with live_server(model=str(full_size_model_dir), time_budget_s=28) as base:
        post_json(f"{base}/generate", {"text": TITLE, "max_new_tokens": 1}, timeout=120)
        with open_stream(f"{base}/generate", {"text": TITLE, "max_new_tokens": 30},
                         timeout=120) as response:
            arrivals = list(response.events())
    times = [seconds for seconds, event in arrivals if "token" in event]
    assert "generated_text" in arrivals[-1][1] and len(times) == 30
    # Measured ~0.1 s to the first and ~3 s to the last; a buffered answer has them equal.
    assert times[0] < times[-1] / 4, times
    assert len({round(t, 2) for t in times}) > 20  # one by one, not in a few bursts
