"""POST /generate's stream: one event per new token, then the non-streamed answer (or the
error). web/stream.py runs the generation; this says what each event holds."""

from ..stream import event
from .protocol import ErrorResponse, GenerateResponse, Token, TokenEvent


class GenerateEvents:
    """web/stream.py's Events for POST /generate."""

    def __init__(self, request_id: str | None):
        self.request_id = request_id

    def opening(self):
        return ()

    def token(self, token_id, text, chosen):
        yield event(TokenEvent(token=Token(id=token_id, text=text)).model_dump())

    def done(self, results):
        yield event(GenerateResponse.from_result(results[0]).model_dump())

    def generated_tokens(self, results):
        return sum(result.generated_tokens for result in results)

    def failed(self, error):
        yield event(ErrorResponse(error=error.message, error_type=error.error_type,
                                  request_id=self.request_id).model_dump())
