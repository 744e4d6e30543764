import re

from kogpt2.web.schemas import ErrorResponse, GenerateRequest, GenerateResponse

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
    html_pages = {"/", "/docs"}  # the document covers the JSON API
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


def test_docs_page_renders_the_document_without_scripts(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "POST /generate" in html and 'id="schema-GenerateRequest"' in html
    assert "&#34;maxLength&#34;: 1000" in html or '"maxLength": 1000' in html
    assert not re.search(r"<script|\son\w+=|javascript:", html, re.IGNORECASE)
    assert not re.search(r"https?://", html)  # nothing remote to fetch
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert 'href="/openapi.json"' in html


def test_docs_link_follows_the_mount_point(client):
    html = client.get("/docs", base_url="http://localhost/dev").get_data(as_text=True)
    assert 'href="/dev/openapi.json"' in html


def test_both_apis_are_documented(client):
    doc = client.get("/openapi.json").get_json()
    completions = doc["paths"]["/v1/completions"]["post"]
    assert set(completions["responses"]) == {"200", "400", "404", "413", "429", "500", "503"}
    for status in set(completions["responses"]) - {"200"}:
        schema = completions["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OpenAIErrorResponse"}
    request = doc["components"]["schemas"]["CompletionRequest"]["properties"]
    assert request["max_tokens"]["default"] == 16
    assert request["repetition_penalty"]["default"] == 1.0
    assert doc["paths"]["/v1/models/{model}"]["get"]["parameters"][0]["name"] == "model"
