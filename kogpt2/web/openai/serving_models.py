"""GET /v1/models and /v1/models/<id>: the one model this server serves."""

import time

from .. import service
from ..errors import APIError
from ..state import get_generator
from .protocol import Model, ModelList

STARTED = int(time.time())


def served_model() -> Model:
    generator = get_generator()
    name = generator.public_name
    return Model(id=name, created=STARTED,
                 owned_by=name.partition("/")[0] if "/" in name else "kogpt2",
                 root=name, max_model_len=generator.max_positions,
                 licences=service.licences())


def check_model(model_id: str | None) -> None:
    """A request naming another model than the served one is refused (404, as OpenAI)."""
    served = get_generator().public_name
    if model_id is not None and model_id != served:
        raise APIError(404, "model_not_found",
                       f"No such model here: this server serves {served!r} (GET /v1/models).",
                       param="model")


def list_models() -> dict:
    return ModelList(data=[served_model()]).model_dump()


def retrieve_model(model_id: str) -> dict:
    check_model(model_id)
    return served_model().model_dump()
