"""The Lambda image, without Docker: hadolint, the stages' structure, the model stage's
command, and the runtime stage rebuilt in a fresh venv.

The runtime stage is read from the Dockerfile itself: the requirements its stages install, the
files it copies, its ENV and its CMD. They are laid out under a temporary root (paths like
/opt/kogpt2/model and ${LAMBDA_TASK_ROOT} moved under it) and the CMD handler is invoked there
on the tiny stand-in converted by scripts/convert.py, in a venv that has only what the image
installs: no torch, no transformers.
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
from dockerfile_parse import DockerfileParser
from lambda_task import ROOT, api_event, invoke, save_python_settings, scheduled_event

DOCKERFILE = ROOT / "Dockerfile"
LAMBDA_TASK_ROOT = "/var/task"  # the base image's ENV
TITLE = "근육이 커지기 위해서는"


def stages(build_args=None):
    """{stage name: (parent, [(instruction, value)])}, with the file's ARG defaults applied."""
    parser = DockerfileParser(str(DOCKERFILE))
    args = {}
    result, current = {}, None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "ARG" and current is None:
            name, _, default = value.partition("=")
            args[name] = (build_args or {}).get(name, default)
        elif instruction == "FROM":
            for name, arg in args.items():
                value = value.replace("${" + name + "}", arg)
            parent, _, name = value.partition(" AS ")
            current = result[name.strip()] = (parent.strip(), [])
        elif current is not None and instruction != "COMMENT":
            current[1].append((instruction, value))
    return result


def chain(all_stages, name):
    """The instructions that make stage `name`, its parent stages' first."""
    parent, instructions = all_stages[name]
    return (chain(all_stages, parent) if parent in all_stages else []) + instructions


def global_args():
    parser = DockerfileParser(str(DOCKERFILE))
    args = {}
    for item in parser.structure:
        if item["instruction"] == "FROM":
            return args
        if item["instruction"] == "ARG":
            name, _, default = item["value"].partition("=")
            args[name] = default
    return args


@pytest.fixture(scope="session")
def runtime_instructions():
    # The arm64 image's runtime (CTranslate2), which the tiny stand-in's conversion serves
    # here; the x86_64 image's (OpenVINO) is the same stage (test below).
    return chain(stages({"ENGINE": "ctranslate2"}), "runtime")


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
    cmd = [json.loads(value) for kind, value in runtime_instructions if kind == "CMD"][-1]
    assert cmd == ["zappa.handler.lambda_handler"]


def image_env(instructions, moved=lambda value: value, build_args=None):
    """The image's ENV, with the build's ARG values put in as Docker does."""
    args = {**global_args(), **(build_args or {})}
    env = {}
    for kind, value in instructions:
        if kind == "ENV":
            for pair in shlex.split(value):
                name, _, setting = pair.partition("=")
                for arg, arg_value in args.items():
                    setting = setting.replace("${" + arg + "}", arg_value)
                env[name] = moved(setting)
    return env


def test_the_image_names_its_engine_and_the_stages_leave_it_alone():
    # `auto` would have the transformers image prepare a CTranslate2 copy at each cold start.
    for engine in ("openvino", "ctranslate2", "transformers"):
        instructions = chain(stages({"ENGINE": engine}), "runtime")
        assert image_env(instructions, build_args={"ENGINE": engine})["KOGPT2_ENGINE"] == engine
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    for stage in settings.values():  # the function's environment would win over the image's
        for variables in ("aws_environment_variables", "environment_variables"):
            assert "KOGPT2_ENGINE" not in stage.get(variables, {})


def requirement_files(instructions):
    """The context files that `pip install -r` reads, found through the COPYs that put them."""
    copied = {}
    for kind, value in instructions:
        if kind == "COPY" and not value.startswith("--from"):
            *sources, destination = value.split()
            for source in sources:
                copied[destination.rstrip("/") + "/" + Path(source).name] = ROOT / source
    files = []
    for kind, value in instructions:
        if kind == "RUN" and "pip install" in value:
            words = value.split()
            files += [copied[words[i + 1]] for i, word in enumerate(words) if word == "-r"]
    return files


@pytest.fixture(scope="session")
def image_venv(runtime_instructions, tmp_path_factory):
    """A venv with exactly what the runtime stage's pip installs put in the image."""
    venv = tmp_path_factory.mktemp("image-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for requirements in requirement_files(runtime_instructions):
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(requirements)],
            check=True, timeout=900,
        )
    return python


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
    image_root = tmp_path / "image"

    def moved(path: str) -> str:
        path = path.replace("${LAMBDA_TASK_ROOT}", LAMBDA_TASK_ROOT)
        return str(image_root) + path if path.startswith(("/opt/", "/var/")) else path

    task_root = Path(moved(LAMBDA_TASK_ROOT))
    task_root.mkdir(parents=True)
    for kind, value in runtime_instructions:
        if kind != "COPY" or "/build/" in value:  # /build: the requirements, installed above
            continue
        *sources, destination = value.split()
        if sources[0] == "--from=model":  # the converted model: here, the tiny stand-in
            shutil.copytree(model_dir, moved(destination))
            continue
        for source in sources:
            target = Path(moved(destination))
            if source == "zappa_settings.py":  # scripts/deploy.sh writes it before the build
                save_python_settings(ROOT, "dev", task_root)
            elif (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                assert (ROOT / source).is_file(), f"COPY {source}: not in the repository"
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / source)

    settings = json.loads((ROOT / "zappa_settings.json").read_text())["dev"]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        **image_env(runtime_instructions, moved, {"ENGINE": engine}),
        **{name: moved(value) for name, value in settings["aws_environment_variables"].items()},
    }
    assert env["KOGPT2_MODEL"] == str(image_root / "opt/kogpt2/model")
    cmd = [json.loads(value) for kind, value in runtime_instructions if kind == "CMD"][-1]
    headers = {"Content-Type": "application/json"}
    warm_up, generated, info = invoke(task_root, [
        scheduled_event("kogpt2-dev-app.warm_up"),
        api_event("POST", "/generate", body={"text": TITLE, "max_new_tokens": 8}, headers=headers),
        api_event("GET", "/info"),
    ], env, tmp_path, python=str(image_venv), handler=cmd[0])

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
