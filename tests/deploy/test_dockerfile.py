"""The Lambda image, without Docker: hadolint, the stages' structure, the model stage's
command, and the runtime stage rebuilt in a fresh venv.

The runtime stage is read from the Dockerfile itself (tests/lambda_image.py): the requirements
its stages install, the files it copies, its ENV, ENTRYPOINT and CMD. They are laid out under a
temporary root (paths like /opt/kogpt2/model and ${LAMBDA_TASK_ROOT} moved under it) and the
ENTRYPOINT + CMD run there against a fake Runtime API (tests/fake_runtime_api.py) on the
tiny stand-in converted by scripts/convert.py, in a venv that has only what the image installs:
no torch, no transformers.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_aws import excluded, ignore_rules
from lambda_image import (
    DOCKERFILE,
    LAMBDA_TASK_ROOT,
    chain,
    exec_form,
    global_args,
    image_env,
    lay_out,
    requirement_files,
    stages,
)
from lambda_task import ROOT, api_event, run_image, scheduled_event

TITLE = "근육이 커지기 위해서는"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    process = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert process.returncode == 0, process.stdout + process.stderr


def test_the_runtime_stage_is_the_slim_one_by_default():
    assert global_args()["ENGINE"] == "openvino"
    slim = chain(stages({"ENGINE": "ctranslate2"}), "runtime")
    assert chain(stages(), "runtime") == slim  # OpenVINO's image runs the same slim stage
    all_stages = stages()
    assert all_stages["runtime"][0] == "deps-openvino"
    assert all_stages["deps-openvino"][0] == all_stages["deps-ctranslate2"][0] == "deps-slim"
    assert all_stages["deps-slim"][0].startswith("public.ecr.aws/lambda/python:3.1")
    assert stages({"ENGINE": "transformers"})["runtime"][0] == "deps-transformers"


# What converting a model reads. The app (app.py, kogpt2/web, templates, static) is not in it,
# so changing the app never invalidates the model stage's cache: no new download or export.
CONVERSION_INPUTS = {"requirements.txt", "requirements-slim.txt", "requirements-lambda.txt",
                     "kogpt2/__init__.py", "kogpt2/model/", "scripts/convert.py"}


def copied_sources(instructions):
    return [source for kind, value in instructions
            if kind == "COPY" and not value.startswith("--from")
            for source in value.split()[:-1]]


def test_the_model_stage_copies_no_app_code():
    for engine in ("openvino", "ctranslate2", "transformers"):
        sources = copied_sources(chain(stages({"ENGINE": engine}), "model"))
        assert set(sources) <= CONVERSION_INPUTS, set(sources) - CONVERSION_INPUTS
        assert "scripts/convert.py" in sources and "kogpt2/model/" in sources


def test_the_image_records_the_model_revision_in_a_label():
    assert global_args()["MODEL_REVISION"] == "main"
    runtime = chain(stages(), "runtime")
    labels = dict(pair.split("=", 1) for kind, value in runtime if kind == "LABEL"
                  for pair in shlex.split(value))
    assert labels == {"kogpt2.engine": "${ENGINE}", "kogpt2.model.id": "${MODEL_ID}",
                      "kogpt2.model.revision": "${MODEL_REVISION}"}
    # A stage sees a global ARG only if it names it again.
    assert {"ENGINE", "MODEL_ID", "MODEL_REVISION"} <= {
        value for kind, value in stages()["runtime"][1] if kind == "ARG"}


FAKE_PYTHON = """\
#!/bin/sh
printf '%s\\n' "$@" > "$CALLED_WITH"
"""


def model_command(engine, tmp_path, **build_args):
    """The arguments the model stage's RUN gives python, run by sh as Docker runs it (ARGs
    are in its environment), with a python that only records them."""
    instructions = stages()["model"][1]
    (run,) = [value for kind, value in instructions if kind == "RUN"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    called_with = tmp_path / "argv"
    env = {**global_args(), "ENGINE": engine, **build_args,
           "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "CALLED_WITH": str(called_with)}
    subprocess.run(["sh", "-c", run], env=env, check=True)
    return called_with.read_text().splitlines()


def test_the_model_stage_converts_to_int8_for_the_engine_at_the_revision(tmp_path):
    for engine in ("openvino", "ctranslate2"):
        assert model_command(engine, tmp_path, MODEL_REVISION="v1.1") == [
            "scripts/convert.py", "skt/kogpt2-base-v2", "/opt/kogpt2/model",
            "--engine", engine, "--weight-format", "int8", "--revision", "v1.1"]
    code, *args = model_command("transformers", tmp_path, MODEL_ID="someone/gpt")[1:]
    assert args == ["someone/gpt", "/opt/kogpt2/model", "main"]


def run_model_stage(engine, tmp_path, model_id, *, pythonpath=""):
    """The model stage's RUN with this venv's python, in the repository (what the stage copies
    to /build), writing to a temporary directory instead of /opt/kogpt2/model."""
    (run,) = [value for kind, value in stages()["model"][1] if kind == "RUN"]
    out = tmp_path / "opt-kogpt2-model"
    bin_dir = tmp_path / "python-bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, **global_args(), "ENGINE": engine, "MODEL_ID": model_id,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": pythonpath}
    process = subprocess.run(["sh", "-c", run.replace("/opt/kogpt2/model", str(out))],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout + process.stderr
    return out


@pytest.mark.parametrize("engine", ["openvino", "ctranslate2"])
def test_the_converter_takes_the_model_stage_command(tmp_path, tiny_model_dir, engine):
    from kogpt2.model import engines

    out = run_model_stage(engine, tmp_path, str(tiny_model_dir))
    assert engines.kind_of(out) is engines.ENGINES[engine]
    assert (out / "kogpt2-model.json").is_file()
    assert out.stat().st_mode & 0o755 == 0o755  # Lambda's user is not the build's root


# The hub, for the transformers branch: a snapshot that is the tiny stand-in, at a commit.
HUB_DOUBLE = """\
import os
from pathlib import Path

from kogpt2.model import hub
from kogpt2.model.source import Source


def download(repo_id, revision=None, progress=None):
    assert (repo_id, revision) == ("someone/gpt", "main"), (repo_id, revision)
    return Source(Path(os.environ["SNAPSHOT"]), repo_id, "c0ffee" * 6 + "c0de")


hub.download = download
"""


def test_the_transformers_image_copies_the_checkpoint_and_names_its_commit(
        tmp_path, tiny_model_dir, monkeypatch):
    from kogpt2.model import engines
    from kogpt2.model.source import local_source

    double = tmp_path / "double"
    double.mkdir()
    (double / "sitecustomize.py").write_text(HUB_DOUBLE)
    monkeypatch.setenv("SNAPSHOT", str(tiny_model_dir))
    out = run_model_stage("transformers", tmp_path, "someone/gpt",
                          pythonpath=f"{double}{os.pathsep}{ROOT}")
    assert engines.kind_of(out) is engines.TRANSFORMERS
    source = local_source(str(out))
    assert (source.hub_id, source.revision) == ("someone/gpt", "c0ffee" * 6 + "c0de")


def test_the_image_keeps_caches_in_tmp_and_runs_zappa(runtime_instructions):
    env = image_env(runtime_instructions)
    assert env["HF_HUB_OFFLINE"] == "1"
    for name in ("HF_HOME", "XDG_CACHE_HOME"):
        assert env[name].startswith("/tmp/")
    assert exec_form(runtime_instructions, "CMD") == ["zappa.handler.lambda_handler"]
    # Lambda runs the ENTRYPOINT with the CMD: the image's own runtime, copied to the task root.
    entrypoint = exec_form(runtime_instructions, "ENTRYPOINT")
    assert entrypoint[0] == "python3" and entrypoint[-1] == f"{LAMBDA_TASK_ROOT}/lambda_runtime.py"
    assert ("COPY", "app.py lambda_runtime.py zappa_settings.py ${LAMBDA_TASK_ROOT}/") in (
        runtime_instructions)


def test_the_image_names_its_engine_and_the_stages_leave_it_alone():
    # `auto` would have the transformers image prepare a CTranslate2 copy at each cold start.
    for engine in ("openvino", "ctranslate2", "transformers"):
        instructions = chain(stages({"ENGINE": engine}), "runtime")
        assert image_env(instructions, build_args={"ENGINE": engine})["KOGPT2_ENGINE"] == engine
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    for stage in settings.values():  # the function's environment would win over the image's
        for variables in ("aws_environment_variables", "environment_variables"):
            assert "KOGPT2_ENGINE" not in stage.get(variables, {})


def test_the_slim_image_installs_neither_torch_nor_transformers(image_venv, runtime_instructions):
    assert [path.name for path in requirement_files(runtime_instructions)] == [
        "requirements-lambda.txt"
    ]
    for module in ("torch", "transformers"):
        process = subprocess.run([str(image_venv), "-c", f"import {module}"], capture_output=True)
        assert process.returncode != 0, f"{module} is importable in the slim image"


@pytest.mark.parametrize("engine, model_fixture", [("openvino", "tiny_ov_dir"),
                                                   ("ctranslate2", "tiny_ct2_dir")])
def test_the_image_serves_from_its_layout(image_venv, runtime_instructions, tmp_path, request,
                                          engine, model_fixture):
    model_dir = request.getfixturevalue(model_fixture)
    image = lay_out(runtime_instructions, tmp_path / "image", model_dir, engine)
    assert image.env["KOGPT2_MODEL"] == str(tmp_path / "image/opt/kogpt2/model")
    headers = {"Content-Type": "application/json"}
    with run_image(image, image_venv, tmp_path) as function:
        warm_up, generated, info = (function.invoke(event) for event in [
            scheduled_event("kogpt2-dev-app.warm_up"),
            api_event("POST", "/generate", body={"text": TITLE, "max_new_tokens": 8},
                      headers=headers),
            api_event("GET", "/info"),
        ])

    assert warm_up["loaded"] is True and warm_up["engine"] == engine
    assert generated["statusCode"] == 200, generated["body"]
    result = json.loads(generated["body"])
    assert result["generated_text"].startswith(TITLE)
    assert result["details"]["engine"] == engine
    assert json.loads(info["body"])["compute_type"].startswith("int8")  # int8 weights


def test_dockerignore_sends_what_the_copies_need_and_nothing_else():
    # An allowlist: everything is ignored, then what the image uses is let back in. Read with
    # the rules the deploy's image tag uses (scripts/deploy_aws.py), as Docker reads them.
    rules = ignore_rules(ROOT / ".dockerignore")
    assert rules[0][:2] == (re.compile("[^/]*"), True)
    sources = set()
    for stage in stages().values():
        sources.update(copied_sources(stage[1]))
    sources.remove("zappa_settings.py")  # written by the deploy, not in the repository
    for source in sources:
        files = [source] if (ROOT / source).is_file() else [
            path.relative_to(ROOT).as_posix() for path in (ROOT / source).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts]
        assert files, source
        assert not [path for path in files if excluded(path, rules)], source
    assert not excluded("zappa_settings.py", rules)
    for kept_out in (".venv/bin/python", "models/kogpt2/model.bin", "tests/conftest.py",
                     ".git/HEAD", "artifacts/load-test.json", "scripts/deploy.sh",
                     "kogpt2/__pycache__/config.cpython-312.pyc", "README.md"):
        assert excluded(kept_out, rules), kept_out
