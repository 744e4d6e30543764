"""On PYTHONPATH (with the repository) for one test server: each token any engine makes takes
SLOW_TOKEN_S seconds more (the engines call Watch.step after each), so that a short time budget
cuts a long generation on any machine, however fast (tests/conftest.py's slow_tokens, for a
server)."""

import os
import time

from kogpt2.model import seam

_step = seam.Watch.step


def _slow_step(self, *args, **kwargs):
    time.sleep(float(os.environ["SLOW_TOKEN_S"]))
    return _step(self, *args, **kwargs)


seam.Watch.step = _slow_step
