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


def test_serving_bench_drives_each_level_and_the_turns_it_compares_with(tiny_model_dir):
    """bench/serving.py end to end on the tiny stand-in: a row per level and mode, every
    request answered; its figures are for people."""
    result = subprocess.run(
        [sys.executable, "bench/serving.py", "--model", str(tiny_model_dir), "--levels", "1,2",
         "--requests", "4", "--max-new-tokens", "4", "--turns-at", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:3] for line in result.stdout.splitlines()
            if re.match(r"\| \d+ \|", line)]
    assert [(n.strip(), mode.strip()) for n, mode in rows] == [
        ("1", "batched"), ("2", "batched"), ("1", "turns"), ("2", "turns")]
    assert (ROOT / "artifacts" / "serving.png").is_file()


def test_prompt_batch_bench_times_each_engine(tiny_model_dir):
    result = subprocess.run(
        [sys.executable, "bench/prompt_batch.py", "--model", str(tiny_model_dir), "--threads",
         "1", "--prompts", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    engines = [line.split("|")[1].strip() for line in result.stdout.splitlines()
               if line.startswith("| ") and not line.startswith("| engine")]
    assert engines == ["openvino", "ctranslate2", "transformers"]
