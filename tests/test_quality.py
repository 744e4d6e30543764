"""bench/quality.py end to end on the tiny stand-in: lm-eval through the service once per
engine, and each engine's distance from transformers float32. Three engines are enough to
show the distance measures something (lm-eval's own start-up costs most of each run): nothing
for the reference itself, next to nothing for a float32 export, something for int8 weights;
one of each engine family. Its figures are for people and are not asserted."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ["transformers-float32", "openvino-int8", "ctranslate2-float32"]


def test_the_quality_check_runs_each_engine_and_measures_its_distance(tiny_model_dir,
                                                                      model_cache, tmp_path):
    figures = tmp_path / "quality.json"
    result = subprocess.run(
        [sys.executable, "bench/quality.py", "--model", str(tiny_model_dir),
         "--engines", ",".join(ENGINES), "--threads", "1", "--cache", str(model_cache),
         "--json", str(figures)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    rows = {row["name"]: row for row in json.loads(figures.read_text())}
    assert list(rows) == ENGINES
    header, *table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert header.startswith("| engine | compute | bits/byte")
    assert [line.split("|")[1].strip() for line in table] == ENGINES
    reference, int8, float32 = (rows[name] for name in ENGINES)
    assert reference["scored_tokens"] > 500 and len(reference["choices"]) == 20
    assert (reference["mean_abs_d_token"], reference["same_answers"]) == (0, 20)
    assert float32["max_abs_d_token"] < 1e-3 and abs(float32["d_bits_per_byte"]) < 1e-4
    assert int8["mean_abs_d_token"] > 1e-4  # not the float32 weights
    assert (int8["engine"], int8["compute_type"]) == ("openvino", "int8 weights, int8 compute")
