"""The Lambda task root and the dev function's environment, for tests of Zappa's handler; the
image's runtime stage and a venv with what it installs."""

import subprocess
import sys

import pytest
from lambda_image import chain, requirement_files, stages
from lambda_task import SETTINGS, make_task_root


@pytest.fixture(scope="session")
def task_root(tmp_path_factory):
    return make_task_root(tmp_path_factory.mktemp("var-task"))


@pytest.fixture(scope="session")
def lambda_env(tiny_model_dir):
    """The dev function's environment, as Lambda sets it, with the tiny stand-in as the model."""
    env = dict(SETTINGS["dev"]["aws_environment_variables"])
    env.update(KOGPT2_MODEL=str(tiny_model_dir), KOGPT2_ENGINE="transformers", KOGPT2_THREADS="1")
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "HF_HUB_OFFLINE": "1",
        "INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT": "1",
        "AWS_DEFAULT_REGION": SETTINGS["dev"]["aws_region"],
        "AWS_LAMBDA_FUNCTION_NAME": "kogpt2-dev",  # Lambda sets it: the app then writes EMF
        **env,
    }


@pytest.fixture(scope="session")
def runtime_instructions():
    # The arm64 image's runtime (CTranslate2), which the tiny stand-in's conversion serves
    # here; the x86_64 image's (OpenVINO) is the same stage (test_dockerfile.py).
    return chain(stages({"ENGINE": "ctranslate2"}), "runtime")


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
