"""gunicorn settings for serving locally: `gunicorn app:app` reads this file."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# One worker holds one model; threads let /health and queued requests answer while it works.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = 4
timeout = 60
graceful_timeout = 30
accesslog = "-"
# gunicorn 27's control socket sits at one path per user: two servers (tests, two checkouts)
# would fight over it, and nothing here uses it.
control_socket_disable = True
