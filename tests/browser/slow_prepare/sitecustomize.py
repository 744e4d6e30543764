"""On PYTHONPATH (with the repository) for one test server: the engine's preparation of a model
takes SLOW_PREPARE_S seconds longer, reporting its progress as it goes, so that a browser can
watch the page wait for it. The tiny stand-in alone prepares in a second or two."""

import os
import time

import kogpt2.model.engines as engines

_prepare = engines.prepare


def _slow_prepare(kind, source_dir, out_dir, *, weight_format, progress):
    steps = 10
    for step in range(steps):
        progress(f"converting to {kind.name} {weight_format}", step / steps)
        time.sleep(float(os.environ["SLOW_PREPARE_S"]) / steps)
    _prepare(kind, source_dir, out_dir, weight_format=weight_format, progress=progress)


engines.prepare = _slow_prepare
