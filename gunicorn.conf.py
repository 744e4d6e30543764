"""gunicorn settings for serving locally: `gunicorn app:app` reads this file.

Chosen from bench/serving.py on 2 cores (README, "Serving under load"), full-size
stand-in, 20 new tokens per request, 4 clients:
  1 worker,  KOGPT2_MAX_CONCURRENCY=1: 1.10 answers/s, p95 3.9 s, /health max 8 ms, 0.9 GB
  1 worker,  KOGPT2_MAX_CONCURRENCY=2: 1.13 answers/s, p95 3.8 s (the engine runs one at a time)
  2 workers, 1 torch thread each:      1.25 answers/s, p95 4.8 s, 1.8 GB (two models)
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# One worker holds one model (~0.9 GB) and uses both cores; a second doubles memory for
# little more throughput and a worse p95.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
# Threads only wait: 1 generates (KOGPT2_MAX_CONCURRENCY), up to 8 queue for it
# (KOGPT2_QUEUE_SIZE), and the rest answer /health, /info and instant 429s meanwhile.
# A stream ("stream": true) counts as the generating one: its generation runs on a thread of
# its own (outside this pool) that stops at the time budget or within a token of the client
# going away, and the pool's thread only writes its events, so it is held no longer than a
# plain request's. Still 1 + 8 + 3, with nothing more to reserve.
threads = 12
# gthread's main loop heartbeats while a thread generates, so this only catches a stuck worker;
# a cold start (imports + load) measured 3–13 s.
timeout = 30
# Lets a generation in flight finish (KOGPT2_TIME_BUDGET_S, 20 s) on reload or shutdown.
graceful_timeout = 25
# The app logs one JSON line per request (kogpt2.access) with its id and timing.
accesslog = None
# gunicorn 27's control socket has one default path per user, so two servers on one machine
# (tests, a dev server) would take each other's; nothing here uses it.
control_socket_disable = True


def child_exit(server, worker):
    """With PROMETHEUS_MULTIPROC_DIR (several workers' /metrics summed: kogpt2/web/metrics.py),
    a dead worker's live gauges leave the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """Tell the app how many workers share the CPUs (KOGPT2_WORKERS): each engine then takes
    its share of the container's CPU quota, not all of it (gunicorn's -w included)."""
    os.environ["KOGPT2_WORKERS"] = str(server.cfg.workers)


def post_worker_init(worker):
    """Each worker loads its model as soon as it starts, and tries a failed load again by
    itself: /ready turns 200 with no request needed (KOGPT2_LOAD_ON_START). The app is made in
    the worker, after the fork: with preload_app, the loading thread would stay in the master."""
    from app import start_loading

    start_loading()
