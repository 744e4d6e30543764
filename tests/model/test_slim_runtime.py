"""The prepared engines serve without torch or transformers, from requirements-slim.txt alone."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement  # comes with pytest

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter that sees only the slim runtime's packages, as in the slim image:
# torch and transformers can't be imported, nor anything requirements-slim.txt doesn't bring
# (a library that imports another only when it is there, as openvino does absl, takes the path
# it takes in the image).
SERVE_WITHOUT_TORCH = r"""
import json, sys
before = set(sys.modules)
absent = set(json.loads(sys.argv[2]))

class SlimOnly:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ImportError(f"No module named {name!r} (not in the slim runtime)")

sys.meta_path.insert(0, SlimOnly())
from app import create_app

client = create_app({"MODEL": sys.argv[1], "THREADS": 1}).test_client()
body = {"text": "근육이 커지기 위해서는", "do_sample": True, "seed": 3, "num_return_sequences": 2}
generate = client.post("/generate", json=body)
greedy = client.post("/generate", json={"text": "근육이 커지기 위해서는"})
print(json.dumps({
    "statuses": [generate.status_code, greedy.status_code],
    "sampled": generate.json, "greedy": greedy.json,
    "info": client.get("/info").json,
    "imported": sorted({name.partition(".")[0] for name in set(sys.modules) - before}),
}))
"""


def requirement_names(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonical(re.split(r"[=<>!~\[; ]", line)[0]) for line in lines if line}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def with_dependencies(names: set[str]) -> set[str]:
    """The distributions pip installs for `names`: them and what they require here."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonical(requirement.name))
    return seen


@pytest.mark.parametrize("engine", ["openvino", "ctranslate2"])
def test_slim_runtime_serves_a_converted_model_without_torch(engine, request):
    model_dir = request.getfixturevalue({"openvino": "tiny_ov_dir",
                                         "ctranslate2": "tiny_ct2_dir"}[engine])
    env = {**os.environ, "KOGPT2_MODEL": str(model_dir)}
    env.pop("KOGPT2_ENGINE", None)
    installed = with_dependencies(requirement_names(ROOT / "requirements-slim.txt"))
    owners = metadata.packages_distributions()
    absent = sorted(module for module, dists in owners.items()
                    if not {canonical(dist) for dist in dists} & installed)
    assert {"torch", "transformers"} <= set(absent)
    process = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(model_dir), json.dumps(absent)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 0, process.stderr  # a crash at exit counts too
    report = json.loads(process.stdout.splitlines()[-1])
    assert report["statuses"] == [200, 200], report
    assert len(report["sampled"]["generations"]) == 2
    assert report["greedy"]["details"]["engine"] == report["info"]["engine"] == engine
    assert report["info"]["compute_type"] == {
        "openvino": "int8 weights, int8 compute", "ctranslate2": "int8_float32"
    }[engine]
    assert not {"torch", "transformers"} & set(report["imported"])

    # Every third-party package that serving imported comes with requirements-slim.txt.
    imported = {
        canonical(dist) for module in report["imported"] for dist in owners.get(module, [])
    }
    assert imported, "no third-party package seen: the audit itself is broken"
    assert imported <= installed, f"missing from requirements-slim.txt: {imported - installed}"
    assert {"torch", "transformers"}.isdisjoint(installed)


PREPARE_WITHOUT_TORCH = r"""
import json, sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ImportError(f"No module named {name!r}")

sys.meta_path.insert(0, BlockTorch())
from app import create_app
from kogpt2.model import ModelLoadError

app = create_app({"MODEL": sys.argv[1], "THREADS": 1, "LOAD_RETRY_S": 60})
client = app.test_client()
first = client.post("/generate", json={"text": "근육이 커지기 위해서는"})
try:
    app.extensions["kogpt2"].load(wait=True)
except ModelLoadError:
    pass
then = client.post("/generate", json={"text": "근육이 커지기 위해서는"})
print(json.dumps({"first": first.json, "then": then.json, "status": then.status_code}))
"""


def test_the_slim_runtime_says_how_to_prepare_a_transformers_model_ahead_of_time(
    tiny_model_dir, tmp_path
):
    env = {**os.environ, "KOGPT2_CACHE_DIR": str(tmp_path)}
    env.pop("KOGPT2_ENGINE", None)
    process = subprocess.run(
        [sys.executable, "-c", PREPARE_WITHOUT_TORCH, str(tiny_model_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout.splitlines()[-1])
    assert report["first"]["error_type"] == "model_loading"
    assert (report["status"], report["then"]["error_type"]) == (503, "model_unavailable")
    assert "convert.py" not in json.dumps(report)  # operator advice stays in the log...
    assert "python scripts/convert.py SRC OUT --engine" in process.stderr  # ...which has it
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
