"""The Lambda task root and the dev function's environment, for tests of Zappa's handler."""

import pytest
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
