import re

from kogpt2.web.errors import ErrorResponse
from kogpt2.web.native.protocol import GenerateRequest, GenerateResponse

TITLE = "근육이 커지기 위해서는"


def test_openapi_document_is_built_from_the_models(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    assert schemas["GenerateRequest"]["properties"]["text"]["maxLength"] == 1000
    assert (schemas["GenerateRequest"]["properties"]["top_p"]
            == GenerateRequest.model_json_schema()["properties"]["top_p"])
    assert set(schemas["GenerateResponse"]["required"]) == set(GenerateResponse.model_fields)
    assert set(schemas["ErrorResponse"]["properties"]) == set(ErrorResponse.model_fields)


def test_every_route_and_status_is_documented(app, client):
    doc = client.get("/openapi.json").get_json()
    routes = {rule.rule.replace("<path:model_id>", "{model}")
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    html_pages = {"/", "/docs", "/docs/swagger-ui/<path:name>"}  # the document covers the JSON API
    assert routes - html_pages == set(doc["paths"])
    generate = doc["paths"]["/generate"]["post"]["responses"]
    assert set(generate) == {"200", "400", "413", "415", "422", "429", "500", "503"}
    assert "Retry-After" in generate["429"]["headers"]
    assert "X-Generated-Tokens" in generate["200"]["headers"]
    for status in set(generate) - {"200"}:
        schema = generate[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


def test_document_states_this_servers_caps(make_app):
    doc = make_app(max_new_tokens=7).test_client().get("/openapi.json").get_json()
    assert "max_new_tokens at 7" in doc["info"]["description"]


def test_docs_page_is_swagger_ui_from_this_apps_own_files(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all('src="/' in attributes and not body.strip()
                           for attributes, body in scripts)  # files, no inline code
    assert not re.search(r"\son\w+=|javascript:", html, re.IGNORECASE)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing remote to fetch
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert 'data-spec-url="/openapi.json"' in html
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', html):
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.mimetype in (
            "text/javascript", "text/css", "image/svg+xml", "application/json"), asset


def test_only_the_swagger_ui_files_the_page_loads_are_served(client):
    assert client.get("/docs/swagger-ui/oauth2-redirect.html").status_code == 404
    assert client.get("/docs/swagger-ui/../../app.py").status_code == 404


def test_docs_links_follow_the_mount_point(client):
    html = client.get("/docs", base_url="http://localhost/dev").get_data(as_text=True)
    assert 'data-spec-url="/dev/openapi.json"' in html
    assert 'src="/dev/docs/swagger-ui/swagger-ui-bundle.js"' in html


def test_both_apis_are_documented(client):
    doc = client.get("/openapi.json").get_json()
    completions = doc["paths"]["/v1/completions"]["post"]
    assert set(completions["responses"]) == {"200", "400", "404", "413", "429", "500", "503"}
    for status in set(completions["responses"]) - {"200"}:
        schema = completions["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OpenAIErrorResponse"}
    request = doc["components"]["schemas"]["CompletionRequest"]["properties"]
    assert request["max_tokens"]["default"] == 16
    # Left out, it is the server's generation setting (GET /info), as /generate's.
    assert request["repetition_penalty"]["default"] is None
    assert "server" in request["repetition_penalty"]["description"]
    assert doc["paths"]["/v1/models/{model}"]["get"]["parameters"][0]["name"] == "model"


def test_servers_follow_the_mount_point(app):
    at_root = app.test_client().get("/openapi.json").get_json()
    assert at_root["servers"] == [{"url": "/"}]
    behind_stage = app.test_client().get(
        "/openapi.json", environ_overrides={"SCRIPT_NAME": "/dev"}).get_json()
    assert behind_stage["servers"] == [{"url": "/dev"}]
    assert "/generate" in behind_stage["paths"]  # paths stay relative to the server
