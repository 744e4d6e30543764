"""GET /docs: Swagger UI over /openapi.json, where "Try it out" sends real requests.

Every file the page loads is this app's: Swagger UI's script and stylesheet come from the
flask-swagger-ui package (its Flask blueprint is not used: its page runs inline script), the
page's own start-up is static/docs.js. So the page's policy allows 'self' and nothing else:
Swagger UI's stylesheet draws its icons from data: URLs, which that policy refuses, so they are
served as files of their own and the stylesheet points at them.
"""

import base64
import functools
import re
from importlib import resources
from urllib.parse import unquote_to_bytes

from flask import Blueprint, Response, abort, render_template, request, send_from_directory

from .openapi import document
from .pages import CONTENT_SECURITY_POLICY
from .state import get_settings

bp = Blueprint("docs", __name__)

SWAGGER_UI_DIR = resources.files("flask_swagger_ui") / "dist"
STYLESHEET = "swagger-ui.css"
SCRIPTS = {"swagger-ui-bundle.js"}
CACHE_S = 3600
# url(data:image/png;base64,...) or url("data:image/svg+xml;charset=utf-8,<svg ...\"...>")
DATA_URL = re.compile(
    r'url\((?P<quote>"?)data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]+)*),'
    r'(?P<data>.*?)(?<!\\)(?P=quote)\)'
)
EXTENSIONS = {"image/svg+xml": "svg", "image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}


@functools.cache
def stylesheet() -> tuple[str, dict[str, tuple[str, bytes]]]:
    """Swagger UI's stylesheet with each data: image as a file beside it: name -> (type, bytes)."""
    images: dict[str, tuple[str, bytes]] = {}

    def as_file(match: re.Match) -> str:
        data = match["data"]
        if ";base64" in match["params"]:
            content = base64.b64decode(data)
        else:  # a quoted CSS string: drop its escapes, then the URL's percent-encoding
            content = unquote_to_bytes(re.sub(r"\\(.)", r"\1", data))
        name = f"img/{len(images)}.{EXTENSIONS.get(match['type'], 'bin')}"
        images[name] = (match["type"], content)
        return f"url({name})"  # relative to the stylesheet: works under a stage prefix

    text = (SWAGGER_UI_DIR / STYLESHEET).read_text(encoding="utf-8")
    return DATA_URL.sub(as_file, text), images


def cached(body, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.cache_control.public = True
    response.cache_control.max_age = CACHE_S
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/docs")
def docs():
    html = render_template("docs.html", title=document(get_settings())["info"]["title"])
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@bp.get("/docs/swagger-ui/<path:name>")
def swagger_ui(name: str):
    """Only the files the page loads."""
    css, images = stylesheet()
    if name == STYLESHEET:
        return cached(css, "text/css")
    if name in images:
        return cached(images[name][1], images[name][0])
    if name in SCRIPTS:
        return send_from_directory(SWAGGER_UI_DIR, name, max_age=CACHE_S)
    abort(404)
