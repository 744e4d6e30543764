"""The Lambda task root and the dev function's environment, for tests of Zappa's handler."""

import shutil

import pytest
from lambda_task import ROOT, SETTINGS, save_python_settings


@pytest.fixture(scope="session")
def task_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("var-task")
    shutil.copy2(ROOT / "app.py", root)
    for folder in ("kogpt2", "templates", "static"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, root / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))
    save_python_settings(ROOT, "dev", root)
    return root


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
        **env,
    }
