import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = [
    "original handler (transformers fp32, no HTTP)",
    "app, transformers (reference)",
    "app, ctranslate2 float32",
    "app, ctranslate2 int8 (default)",
]


def test_bench_runs_every_contender_end_to_end():
    """The bench itself works (on the tiny stand-in); its figures are for people, not asserts."""
    result = subprocess.run(
        [sys.executable, "bench/bench.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for name in CONTENDERS:
        (row,) = [r for r in rows if name in r]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        first_answer_s, warm_ms, new_tokens = float(cells[2]), float(cells[4]), int(cells[6])
        assert first_answer_s > 0 and warm_ms > 0 and new_tokens > 0, row
    assert "read bandwidth" in result.stdout
    (ttft,) = re.findall(r"time to first token .*: (\d+) ms", result.stdout)
    assert int(ttft) > 0
