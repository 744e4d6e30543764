import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = [
    "original handler (transformers fp32, no HTTP)",
    "app, transformers fp32 (reference)",
    "app, ctranslate2 int8",
    "**app, openvino int8 (default)**",
]


def test_bench_runs_every_contender_end_to_end():
    """The bench itself works (on the tiny stand-in); its figures are for people, not asserts."""
    result = subprocess.run(
        [sys.executable, "bench/bench.py", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    for name in CONTENDERS:
        found = [r for r in rows if r.startswith(f"| {name} |")]
        assert [r.split("|")[2].strip() for r in found] == ["1", "2"], (name, rows)
        for row in found:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            first_answer_s, warm_ms, new_tokens = float(cells[3]), float(cells[5]), int(cells[7])
            assert first_answer_s > 0 and warm_ms > 0 and new_tokens > 0, row
    assert "read bandwidth" in result.stdout
    ttfts = re.findall(r"(\d+) ms at (\d) thread", result.stdout)
    assert [threads for _, threads in ttfts] == ["1", "2"] and all(int(ms) > 0 for ms, _ in ttfts)
    assert len(re.findall(r"^- [12] thread\(s\), .* → (met|MISSED)$", result.stdout,
                          re.MULTILINE)) == 10
