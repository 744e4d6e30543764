"""lm-evaluation-harness against gunicorn on the tiny stand-in, as its users run it: the CLI,
`--model local-completions` with only `base_url` (and the model's id), no tokenizer named, on
the quality check's two tasks, kept in the repo (bench/quality_tasks): a multiple-choice task
(loglikelihood) and a perplexity task (loglikelihood_rolling).

Its tokenizer is the server's (/tokenizer_info, /tokenize): the hub is off and HF_HOME empty,
so a fallback to a hub tokenizer would fail the run. Every score it reports is transformers'
own for the stand-in (float32), computed here apart from the server.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai_checks import MODEL

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "bench" / "quality_tasks"


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    """Log-likelihood of `continuation` after `context` by transformers, float32, with the
    tokens split as lm-eval splits them (the whole text encoded, the context's tokens cut)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    tokenizer = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def encode(text):
        return tokenizer.encode(text, add_special_tokens=False).ids

    def loglikelihood(context_ids, continuation_ids):
        ids = context_ids + continuation_ids
        with torch.no_grad():
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
        start = len(context_ids)
        return sum(logprobs[i - 1, ids[i]].item() for i in range(start, len(ids)))

    def choice(context, continuation):
        whole, head = encode(context + continuation), encode(context)
        return loglikelihood(head, whole[len(head):])

    def rolling(text):  # one window: the end-of-text token, then the text
        return loglikelihood([tokenizer.token_to_id("</s>")], encode(text))

    return choice, rolling


@pytest.fixture(scope="module")
def evaluation(live_server, tmp_path_factory):
    """One `lm-eval run` of both tasks against a fresh server: (results, samples, access log)."""
    work = tmp_path_factory.mktemp("lm-eval")
    log = work / "server.log"
    with live_server(log=log) as base:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("lm-eval")), "run",
             "--model", "local-completions",
             "--model_args", f"base_url={base}/v1/completions,model={MODEL},max_length=1024",
             "--tasks", "kogpt2_ko_choice", "kogpt2_ko_text", "--include_path", str(TASKS),
             "--batch_size", "4", "--output_path", str(work / "out"), "--log_samples"],
            cwd=work, capture_output=True, text=True, timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                 "HF_HOME": str(work / "hf-home")},
        )
    assert result.returncode == 0, result.stderr[-4000:]
    (results_file,) = glob.glob(str(work / "out" / "*" / "results_*.json"))
    samples = {}
    for task in ("kogpt2_ko_choice", "kogpt2_ko_text"):
        (path,) = glob.glob(str(work / "out" / "*" / f"samples_{task}_*.jsonl"))
        samples[task] = [json.loads(line) for line in Path(path).read_text().splitlines()]
    access = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()
              if line.startswith("{")]
    return json.loads(Path(results_file).read_text())["results"], samples, access


def test_it_tokenizes_with_the_servers_tokenizer(evaluation):
    _, _, access = evaluation
    routes = {(line["method"], line["route"]) for line in access}
    assert {("GET", "/tokenizer_info"), ("POST", "/tokenize"),
            ("POST", "/v1/completions")} <= routes
    assert {line["status"] for line in access} == {200}  # nothing refused, nothing retried


def test_multiple_choice_scores_are_transformers_own(evaluation, reference):
    results, samples, _ = evaluation
    choice, _ = reference
    items = samples["kogpt2_ko_choice"]
    assert len(items) == 20
    correct = 0
    for item in items:
        doc = item["doc"]
        expected = [choice(doc["question"], " " + text) for text in doc["choices"]]
        got = [float(loglikelihood) for loglikelihood, _ in item["filtered_resps"]]
        assert got == pytest.approx(expected, abs=1e-3), doc["question"]
        correct += expected.index(max(expected)) == doc["answer"]
    assert results["kogpt2_ko_choice"]["acc,none"] == pytest.approx(correct / len(items))


def test_rolling_perplexity_is_transformers_own(evaluation, reference):
    results, samples, _ = evaluation
    _, rolling = reference
    passages = samples["kogpt2_ko_text"]
    assert len(passages) == 7
    total, size = 0.0, 0
    for passage in passages:
        text = passage["doc"]["text"]
        (loglikelihood,) = passage["filtered_resps"]
        assert float(loglikelihood) == pytest.approx(rolling(text), abs=1e-3)
        total += rolling(text)
        size += len(text.encode("utf-8"))
    scores = results["kogpt2_ko_text"]
    bits_per_byte = -total / size / 0.6931471805599453
    assert scores["bits_per_byte,none"] == pytest.approx(bits_per_byte, rel=1e-4)
    assert scores["byte_perplexity,none"] == pytest.approx(2 ** bits_per_byte, rel=1e-4)
