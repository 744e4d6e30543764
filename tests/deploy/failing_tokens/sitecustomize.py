"""On PYTHONPATH (with the task root) for one Lambda container: a generation fails after
FAIL_AFTER_TOKENS tokens (the engines call Watch.step after each), so that a stream fails
after it began, on any engine."""

import os

from kogpt2.model import seam

_step = seam.Watch.step


def _failing_step(self, *args, **kwargs):
    self.steps_taken = getattr(self, "steps_taken", 0) + 1
    if self.steps_taken > int(os.environ["FAIL_AFTER_TOKENS"]):
        raise RuntimeError("a generation that fails mid-stream (tests/deploy/failing_tokens)")
    return _step(self, *args, **kwargs)


seam.Watch.step = _failing_step
