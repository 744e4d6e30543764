"""guidellm, the serving benchmark, against gunicorn on the tiny stand-in, run as its docs say
(`guidellm run --backend kind=openai_http,target=... --data kind=synthetic_text,...`), on
/v1/completions. Its synthetic prompts are written with a tokenizer: the stand-in's own
directory, since the hub is off; the model's id it reads from GET /v1/models.

Each request streams with vLLM's `ignore_eos` and `stream_options.continuous_usage_stats`,
and guidellm counts tokens only from `usage`: every request must succeed, with exactly the
output tokens asked for and the server's own count of prompt tokens.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from openai_checks import MODEL, tokenize

REQUESTS, PROMPT_TOKENS, OUTPUT_TOKENS = 4, 16, 8


def test_every_request_succeeds_with_usage_counted(warm_server, tiny_model_dir, tmp_path):
    import openai

    report = tmp_path / "benchmarks.json"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("guidellm")), "run",
         "--backend", f"kind=openai_http,target={warm_server},request_format=/v1/completions",
         "--profile", "kind=synchronous",
         "--constraint", f"kind=max_requests,count={REQUESTS}",
         "--data", f"kind=synthetic_text,prompt_tokens={PROMPT_TOKENS},"
                   f"output_tokens={OUTPUT_TOKENS}",
         "--tokenizer", f"kind=hf_auto,model={tiny_model_dir}",
         "--output", f"kind=json,path={report}", "--disable-console-interactive"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (benchmark,) = json.loads(report.read_text())["benchmarks"]
    requests = benchmark["requests"]
    assert (len(requests["errored"]), len(requests["incomplete"])) == (0, 0), \
        [r["info"]["error"] for r in requests["errored"]]
    assert len(requests["successful"]) == REQUESTS
    with openai.OpenAI(base_url=f"{warm_server}/v1", api_key="unused", max_retries=0) as client:
        for request in requests["successful"]:
            body = json.loads(request["request_args"])["body"]
            assert (body["model"], body["ignore_eos"]) == (MODEL, True)
            assert body["stream_options"]["continuous_usage_stats"] is True
            assert request["output"]
            assert request["output_metrics"]["text_tokens"] == OUTPUT_TOKENS
            assert request["input_metrics"]["text_tokens"] == len(
                tokenize(client, body["prompt"]))
