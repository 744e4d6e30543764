"""The page at /: a form for people, with or without JavaScript. Same validation as the API.

GET / renders the form; JavaScript then calls POST /generate. Without JavaScript the form posts
to POST /, which validates with the API's own GenerateRequest and renders the result page.
"""

from dataclasses import dataclass

from flask import Blueprint, render_template, request

from . import service
from .errors import resolve
from .native.protocol import GenerateRequest, GenerateResponse
from .native.routes import service_info
from .state import get_settings

bp = Blueprint("pages", __name__)

# Only the page's own files may run or style it: no inline code, so text that slips into the
# markup can't execute.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

EXAMPLES = [
    "근육이 커지기 위해서는",
    "오늘 아침 서울의 날씨는",
    "인공지능이 바꿀 미래의 직업",
    "맛있는 김치찌개를 끓이려면",
]


@dataclass(frozen=True)
class NumberField:
    name: str  # a GenerationParams field
    label: str
    kind: type
    step: str
    hint: str


DECODING_FIELDS = [
    NumberField("max_new_tokens", "길이 (새 토큰 수)", int, "1", "비우면 제목과 합쳐 90토큰"),
    NumberField("repetition_penalty", "반복 페널티", float, "0.1", "클수록 같은 말을 덜 되풀이"),
]
SAMPLING_FIELDS = [  # used only when do_sample is on
    NumberField("temperature", "온도", float, "0.05", "클수록 다양하고 엉뚱하게"),
    NumberField("top_p", "top-p", float, "0.01", "후보 단어의 누적 확률 상한"),
    NumberField("seed", "시드", int, "1", "같은 시드면 같은 글, 비우면 무작위"),
]
NUMBER_FIELDS = DECODING_FIELDS + SAMPLING_FIELDS

# Korean headlines over the API's (English) error message; the page's script uses them too.
ERROR_HEADLINES = {
    "validation_error": "입력을 확인해 주세요.",
    "model_loading": "모델을 준비하는 중입니다. 잠시 뒤에 다시 해 보세요.",
    "model_unavailable": "모델을 불러오지 못했습니다. 잠시 뒤에 다시 해 보세요.",
    "payload_too_large": "입력이 너무 큽니다.",
    "overloaded": "요청이 몰려 있습니다. 잠시 뒤에 다시 해 보세요.",
    "internal_error": "서버에 문제가 생겼습니다.",
    "network": "서버에 연결하지 못했습니다. 인터넷 연결을 확인해 주세요.",
    "bad_response": "서버의 응답을 알아볼 수 없습니다.",
    "other": "요청을 처리하지 못했습니다.",
}
# The model's state (/info's `state`) in the footer.
MODEL_STATES = {
    "ready": "준비됨",
    "loading": "준비하는 중",
    "failed": "불러오지 못해 다시 시도하는 중",
    "not_loaded": "첫 요청 때 불러옵니다",
}
FINISH_REASONS = {
    "length": "정한 길이에 도달",
    "eos": "글이 스스로 끝남",
    "time": "시간 한도에 걸림",
    "cancelled": "정지함",
}
# What the page's script says about a stream it stopped or lost.
STREAM_NOTES = {
    "stopped": "정지했습니다. 여기까지 쓴 글입니다.",
    "cut": "글을 받는 중에 연결이 끊겼습니다. 여기까지 받은 글입니다.",
}
TIME_NOTE = "시간 한도({seconds}초)에 걸려 글이 중간에 멈췄습니다. 길이를 줄이면 끝까지 씁니다."

def number_bounds(info: dict) -> dict[str, dict]:
    """An <input type=number>'s min, max and default for each field, from /info."""
    bounds = {}
    for field in NUMBER_FIELDS:
        schema = info["parameters"][field.name]
        number = next(s for s in schema.get("anyOf", [schema]) if s.get("type") != "null")
        low = number.get("minimum")
        if low is None:  # exclusive: the smallest step above it
            low = number["exclusiveMinimum"] + field.kind(field.step)
        high = number["maximum"]
        if field.name == "max_new_tokens":
            high = min(high, info["limits"]["max_new_tokens"])
        default = info["generation_defaults"].get(field.name, schema.get("default"))
        default = "" if default is None else default
        bounds[field.name] = {"min": low, "max": high, "default": default}
    return bounds


def typed_form(form: dict[str, str]) -> dict:
    """Form strings to the JSON types GenerateRequest expects; blank numbers take defaults."""
    values = {"text": form.get("text", ""), "do_sample": "do_sample" in form}
    for field in NUMBER_FIELDS:
        raw = form.get(field.name, "").strip()
        if raw:
            try:
                values[field.name] = field.kind(raw)
            except ValueError:
                values[field.name] = raw  # GenerateRequest says "should be a valid number"
    return values


def describe_result(title: str, response: GenerateResponse, time_budget_s: float) -> dict:
    text, details = response.generated_text, response.details
    if not text.startswith(title):
        title = ""
    return {
        "title": title,
        "continuation": text[len(title):],
        "generated_tokens": details.generated_tokens,
        "prompt_tokens": details.prompt_tokens,
        "seconds": f"{details.time_ms / 1000:.1f}",
        "finish_reason": FINISH_REASONS[details.finish_reason],
        "seed": "" if details.seed is None else details.seed,
        "time_note": TIME_NOTE.format(seconds=f"{time_budget_s:g}")
        if details.finish_reason == "time" else "",
    }


def render_page(values: dict, *, result=None, error=None):
    info = service_info()
    return render_template(
        "index.html",
        info=info,
        decoding_fields=DECODING_FIELDS,
        sampling_fields=SAMPLING_FIELDS,
        bounds=number_bounds(info),
        values=values,
        examples=EXAMPLES,
        result=result,
        error=error,
        licences=service.licences(),
        texts={
            "errors": ERROR_HEADLINES,
            "finish_reasons": FINISH_REASONS,
            "model_states": MODEL_STATES,
            "time_note": TIME_NOTE.format(seconds=f"{info['limits']['time_budget_s']:g}"),
            "stream_notes": STREAM_NOTES,
        },
    )


@bp.get("/")
def index():
    # ?text= pre-fills the title: the example links work without JavaScript.
    return render_page({"text": request.args.get("text", "")})


@bp.post("/")
def submit():
    form = {}
    try:
        form = request.form.to_dict()
        generate_request = service.validate(GenerateRequest, typed_form(form))
        prompt = service.check(generate_request.text, service.params(**generate_request.knobs()))
        result = service.generate_one(prompt)
    except Exception as exc:  # shown on the page in the API's words, never as JSON
        error = resolve(exc)  # the same description the API gives
        headline = ERROR_HEADLINES.get(error.error_type, ERROR_HEADLINES["other"])
        shown = {"headline": headline, "message": error.message}
        return render_page(form, error=shown), error.status, error.headers
    response = GenerateResponse.from_result(result)
    budget = get_settings().time_budget_s
    return render_page(form, result=describe_result(generate_request.text, response, budget))


@bp.after_request
def set_content_security_policy(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
