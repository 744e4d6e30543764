#!/usr/bin/env python3
"""The quality check: lm-evaluation-harness against the running service, once per engine.

    python bench/quality.py                                  # full-size stand-in, every engine
    python bench/quality.py --model skt/kogpt2-base-v2       # the real model (needs the hub)
    python bench/quality.py --model models/tiny --engines transformers-float32,openvino-int8

For each engine it starts `gunicorn app:app` on 127.0.0.1 (scripts/local_server.py) serving the
model with that engine and weight format (the server prepares its copy, into this run's cache
unless --cache says where), and runs lm-eval's `local-completions` on it with the server's own
tokenizer (`tokenizer_backend=remote`: /tokenizer_info, /tokenize) on the two Korean tasks in
bench/quality_tasks: rolling log-likelihood of seven passages (bits per byte, byte and word
perplexity) and twenty multiple-choice items (accuracy). Then it scores each passage once more
itself, with `echo` and `max_tokens: 0`, for the log-probability of every token.

It prints one row per engine, and each engine's distance from transformers float32 (the
reference, always run first): the difference in each metric, how many multiple-choice answers
are the reference's, and the mean and largest |Δ log-probability| per token over the passages.
On the real model this is the gate a lower precision must pass before it becomes a default; on
a stand-in (random weights) the metrics mean nothing, the distances still do.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from local_server import LocalServer, call  # noqa: E402

TASKS_DIR = ROOT / "bench" / "quality_tasks"
TEXT_TASK, CHOICE_TASK = "kogpt2_ko_text", "kogpt2_ko_choice"
REFERENCE = "transformers-float32"
ENGINES = [REFERENCE, "openvino-int8", "ctranslate2-int8", "openvino-float32",
           "ctranslate2-float32"]
LOAD_WAIT_S = 1800  # the longest a server may take to prepare and load its model
SERVER_HUB_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "0")  # a hub id needs the hub


class Refused(Exception):
    """The service can't score with this engine: its own message says why."""


def served_model(base: str) -> str:
    """The model's id, once the server has prepared and loaded it (503s until then)."""
    _, models, _ = call(f"{base}/v1/models")
    model = models["data"][0]["id"]
    deadline = time.monotonic() + LOAD_WAIT_S
    while True:
        status, answer, headers = call(f"{base}/v1/completions",
                                       {"model": model, "prompt": "가", "max_tokens": 1})
        if status == 200:
            return model
        if status != 503 or time.monotonic() > deadline:
            raise SystemExit(f"the server did not serve a completion: {status} {answer}")
        time.sleep(min(float(headers.get("Retry-After", 1)), 5))


def score_tokens(base: str, model: str, passages: list[str]) -> list[list[float]]:
    """Each text's tokens' log-probabilities, the end-of-text token before it as lm-eval's
    rolling windows put it: echo with max_tokens 0 scores without generating. Refused where
    the engine can't score (before lm-eval, which would retry and then fail less clearly)."""
    status, info, _ = call(f"{base}/tokenizer_info")
    if status != 200:  # a service without vLLM's tokenizer endpoints can't be scored here
        raise Refused(f"GET /tokenizer_info answered {status}")
    scored = []
    for text in passages:
        ids = []
        for part in (info["eos_token"], text):
            _, tokens, _ = call(f"{base}/tokenize", {"prompt": part, "add_special_tokens": False})
            ids += tokens["tokens"]
        status, answer, _ = call(f"{base}/v1/completions", {
            "model": model, "prompt": ids, "echo": True, "max_tokens": 0, "logprobs": 0,
            "temperature": 0})
        if status == 400:
            raise Refused(answer["error"]["message"])
        if status != 200:
            raise SystemExit(f"echo scoring failed: {status} {answer}")
        scored.append(answer["choices"][0]["logprobs"]["token_logprobs"][1:])
    return scored


def evaluate(base: str, model: str, batch_size: int) -> dict:
    """lm-eval on both tasks: its metrics, each choice's log-likelihoods, each passage's."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    output = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={"base_url": f"{base}/v1/completions", "model": model,
                    "tokenizer_backend": "remote", "max_length": 1024},
        tasks=[TEXT_TASK, CHOICE_TASK], batch_size=batch_size, log_samples=True,
        task_manager=TaskManager(include_path=str(TASKS_DIR)),
    )
    results, samples = output["results"], output["samples"]
    text, choice = results[TEXT_TASK], results[CHOICE_TASK]
    ordered = {task: sorted(samples[task], key=lambda sample: sample["doc_id"])
               for task in (TEXT_TASK, CHOICE_TASK)}
    return {
        "bits_per_byte": text["bits_per_byte,none"],
        "byte_perplexity": text["byte_perplexity,none"],
        "word_perplexity": text["word_perplexity,none"],
        "acc": choice["acc,none"],
        "acc_stderr": choice["acc_stderr,none"],
        "acc_norm": choice["acc_norm,none"],
        "choices": [[float(loglikelihood) for loglikelihood, _ in sample["filtered_resps"]]
                    for sample in ordered[CHOICE_TASK]],
        "passages": [float(sample["filtered_resps"][0]) for sample in ordered[TEXT_TASK]],
    }


def run_engine(name: str, args, cache: Path) -> dict:
    engine, weight_format = name.split("-")
    env = {"KOGPT2_MODEL": args.model, "KOGPT2_ENGINE": engine,
           "KOGPT2_WEIGHT_FORMAT": weight_format, "KOGPT2_CACHE_DIR": str(cache),
           "HF_HUB_OFFLINE": SERVER_HUB_OFFLINE}
    if args.threads:
        env["KOGPT2_THREADS"] = str(args.threads)
    print(f"{name}: starting the service ...", file=sys.stderr)
    with LocalServer(env, "--log-level", "warning", quiet=not args.verbose) as server:
        model = served_model(server.base)
        _, info, _ = call(f"{server.base}/info")
        tokens = score_tokens(server.base, model, texts())
        print(f"{name}: lm-eval on {TEXT_TASK} and {CHOICE_TASK} ...", file=sys.stderr)
        started = time.monotonic()
        row = evaluate(server.base, model, args.batch_size)
        row["seconds"] = time.monotonic() - started
    row.update(name=name, tokens=tokens, engine=info["engine"],
               compute_type=info["compute_type"])
    return row


def texts() -> list[str]:
    """The passages of the text task, in its order."""
    lines = (TASKS_DIR / "ko_text.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def compare(row: dict, reference: dict) -> dict:
    """The distance from the reference: metric differences, agreement, per-token |Δ|."""
    deltas = [abs(a - b) for mine, theirs in zip(row["tokens"], reference["tokens"], strict=True)
              for a, b in zip(mine, theirs, strict=True)]

    def answers(choices):
        return [values.index(max(values)) for values in choices]

    same = sum(a == b for a, b in zip(answers(row["choices"]), answers(reference["choices"]),
                                      strict=True))
    return {
        **{f"d_{key}": row[key] - reference[key]
           for key in ("bits_per_byte", "byte_perplexity", "word_perplexity", "acc", "acc_norm")},
        "same_answers": same,
        "mean_abs_d_passage": sum(abs(a - b) for a, b in zip(
            row["passages"], reference["passages"], strict=True)) / len(row["passages"]),
        "mean_abs_d_token": sum(deltas) / len(deltas),
        "max_abs_d_token": max(deltas),
        "scored_tokens": len(deltas),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| engine | compute | bits/byte | byte ppl | word ppl | acc | acc_norm "
        "| Δ bits/byte | Δ word ppl | Δ acc | same answers | mean abs Δ logprob/token "
        "| max abs Δ logprob | lm-eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['compute_type']} | {row['bits_per_byte']:.4f} "
            f"| {row['byte_perplexity']:.4f} | {row['word_perplexity']:.2f} "
            f"| {row['acc']:.2f} ± {row['acc_stderr']:.2f} | {row['acc_norm']:.2f} "
            f"| {row['d_bits_per_byte']:+.4f} | {row['d_word_perplexity']:+.2f} "
            f"| {row['d_acc']:+.2f} | {row['same_answers']}/{len(row['choices'])} "
            f"| {row['mean_abs_d_token']:.2e} | {row['max_abs_d_token']:.2e} "
            f"| {row['seconds']:.0f} |")
    return "\n".join(lines)



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or transformers model directory (default: "
                        "models/kogpt2-stand-in, the full-size stand-in, built if missing)")
    parser.add_argument("--engines", help=f"ENGINE-WEIGHTS, comma-separated, of {ENGINES} "
                        f"(default: each whose engine is installed); {REFERENCE} always runs "
                        "first")
    parser.add_argument("--batch-size", type=int, default=1, help="lm-eval's prompts a request")
    parser.add_argument("--threads", type=int, help="KOGPT2_THREADS of each server")
    parser.add_argument("--cache", help="where the servers keep prepared copies "
                        "(default: a temporary directory)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--verbose", action="store_true", help="show the servers' log lines")
    args = parser.parse_args(argv)
    if args.model is None:
        from make_stand_in import stand_in_at

        args.model = str(stand_in_at())
    elif Path(args.model).is_dir():
        args.model = str(Path(args.model).resolve())
    if args.engines is None:
        from kogpt2.model.engines import ENGINES as KINDS

        missing = [n for n in ENGINES if not KINDS[n.split("-")[0]].installed()]
        if missing:
            print(f"not installed here, left out: {', '.join(missing)}", file=sys.stderr)
        args.engines = ",".join(n for n in ENGINES if n not in missing)
    names = [REFERENCE, *(n for n in args.engines.split(",") if n and n != REFERENCE)]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}: choose from {', '.join(ENGINES)}")
    # lm-eval reads everything from the repo and the server: it never needs the hub.
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")

    rows, refused = [], {}
    with tempfile.TemporaryDirectory(prefix="kogpt2-quality-") as scratch:
        cache = Path(args.cache) if args.cache else Path(scratch)
        for name in names:
            try:
                rows.append(run_engine(name, args, cache))
            except Refused as reason:
                if name == REFERENCE:
                    raise SystemExit(f"the reference can't score: {reason}") from None
                refused[name] = str(reason)
    reference = rows[0]
    for row in rows:
        row.update(compare(row, reference))
    load = os.getloadavg()[0]
    print(f"Model: {args.model}. Tasks: {TEXT_TASK} (7 passages, "
          f"{sum(len(t.encode()) for t in texts())} bytes, "
          f"{reference['scored_tokens']} tokens), {CHOICE_TASK} ({len(reference['choices'])} "
          f"items); lm-eval {lm_eval_version()}, local-completions, remote tokenizer, batch "
          f"size {args.batch_size}. Δ: this engine minus {REFERENCE}; per-token log-probabilities "
          f"from echo scoring of the passages. Load average at the end: {load:.1f}.\n")
    print(table(rows))
    for name, reason in refused.items():
        print(f"\n{name}: refused by the service: {reason}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [*rows, *({"name": name, "refused": reason} for name, reason in refused.items())],
            indent=1))
    bad = [row["name"] for row in rows
           if not all(math.isfinite(row[k]) for k in ("bits_per_byte", "mean_abs_d_token"))]
    if bad:
        print(f"not finite: {bad}", file=sys.stderr)
    return 1 if bad or refused else 0


def lm_eval_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("lm_eval")


if __name__ == "__main__":
    sys.exit(main())
