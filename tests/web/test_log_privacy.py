"""`make dev`'s server (werkzeug) logs the request line with its query string, as Zappa does
(tests/deploy/test_zappa_handler.py checks Zappa's): the page's links are `/?text=<title>`."""

import logging
import threading
import urllib.request
from urllib.parse import quote

from werkzeug.serving import make_server

SECRET_TITLE = "개발서버로그에없어야할제목"


def serve_once(app, caplog):
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    url = f"http://127.0.0.1:{server.port}/?text={quote(SECRET_TITLE)}"
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200
        thread.join(timeout=30)
    server.server_close()
    return "\n".join(record.getMessage() for record in caplog.records
                     if record.name == "werkzeug")


def test_the_dev_server_logs_the_path_without_the_title(make_app, caplog):
    log = serve_once(make_app(), caplog)
    assert '"GET / HTTP/1.1" 200' in log
    assert quote(SECRET_TITLE) not in log and SECRET_TITLE not in log


def test_with_log_prompts_the_dev_server_logs_the_query(make_app, caplog):
    log = serve_once(make_app(log_prompts=True), caplog)
    assert f'"GET /?text={SECRET_TITLE} HTTP/1.1" 200' in log  # werkzeug unquotes it
