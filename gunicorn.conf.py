"""gunicorn settings for serving locally: `gunicorn app:app` reads this file.

Chosen from bench/serving.py on 2 cores, full-size stand-in (docs/operations.md, "Many at
once"): one worker, whose openvino engine decodes every running request in shared steps (8 at
once: 4.9x the tokens/s of one at a time). A second worker would hold a second model and split
the same two cores.
"""

import ctypes
import os

M_ARENA_MAX = -8  # mallopt's parameter (glibc's malloc.h)


def fewer_malloc_arenas(arenas: int = 1) -> None:
    """glibc gives threads that allocate at once arenas of their own, up to 8 per core, and
    their fragments stay: with 16 streams written by as many threads, a worker's peak RSS was
    510-560 MB, 497 MB with one arena, at the same tokens/s (bench/serving.py). Set here, in
    the master, the workers inherit it; MALLOC_ARENA_MAX in the environment wins."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to set
        pass


fewer_malloc_arenas()

bind = os.environ.get("BIND", "127.0.0.1:8000")
# One worker holds one model (~400 MB, openvino int8) and uses both cores; a second doubles
# memory and splits the same cores.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
# Threads mostly wait: up to 20 generate together (KOGPT2_MAX_CONCURRENCY, by default the
# openvino engine's row cap, KOGPT2_MAX_BATCH_ROWS), up to 8 queue for a place
# (KOGPT2_QUEUE_SIZE), and the rest answer /health, /info and instant 429s meanwhile. A stream's
# generation runs on a thread of its own (outside this pool) that stops at the time budget or
# within a token of the client going away; the pool's thread only writes its events.
threads = 32
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
