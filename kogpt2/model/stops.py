"""Stop texts: a continuation ends where one of the caller's stop strings first appears.

A stop string is text, not a token: it may span tokens, or end inside one. So the decoded text
is searched, never the token ids. Two uses:

- after a generation, each sequence is cut before its first stop text, and counts the tokens it
  took to complete it (`cut_at_stop`);
- while one sequence is generated, `EarlyStop` hears each token and stops the engine at the token
  that completes a stop text, so nothing past it is computed.

A stream that shows text as it comes must hold back the end that could still become a stop text
(`held_back`, `sendable`): " 다" may be the start of the stop " 다음".
"""

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

# The text that a sequence's new token ids decode to, after the prompt.
Decode = Callable[[list[int]], str]


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop text starts in `text`; None if none is there."""
    found = [at for at in (text.find(stop) for stop in stops) if at >= 0]
    return min(found) if found else None


class Cut(NamedTuple):
    text: str  # before the stop text
    tokens: int  # the fewest leading tokens whose text holds the stop text
    stop: str  # the stop text found (the caller's first one that starts there)


def cut_at_stop(decode: Decode, new_ids: list[int], stops: Sequence[str]) -> Cut | None:
    """The text before the first stop text, how many tokens it took to complete that stop
    text, and which one it is; None if the text holds no stop text."""
    text = decode(new_ids)
    at = first_stop(text, stops)
    if at is None:
        return None
    # The fewest leading tokens whose text holds a stop text (once there, it stays).
    low, high = 1, len(new_ids)
    while low < high:
        middle = (low + high) // 2
        if first_stop(decode(new_ids[:middle]), stops) is None:
            low = middle + 1
        else:
            high = middle
    return Cut(text[:at], low, next(stop for stop in stops if text.startswith(stop, at)))


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of `text` could be the start of a stop text."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


def sendable(text: str, stops: Sequence[str]) -> str:
    """What a stream may show of a continuation's text so far: what comes before the first
    stop text, and short of an end that could still become one."""
    at = first_stop(text, stops)
    return text[:at] if at is not None else text[: len(text) - held_back(text, stops)]


class EarlyStop:
    """Watches one sequence: stops its generation at the token that completes a stop text.

    It is both the engine watch's `on_token` (`hear`) and its `cancel` (`is_set`): set once a
    stop text appears, or when the caller's own `cancel` is set.
    """

    def __init__(self, decode: Decode, stops: Sequence[str],
                 cancel: threading.Event | None = None, on_token=None):
        self.decode, self.stops = decode, stops
        self.cancel, self.on_token = cancel, on_token
        self.ids: list[int] = []
        self.found = False

    def hear(self, token_id: int, chosen=None) -> None:
        if self.on_token is not None:
            self.on_token(token_id, chosen)
        self.ids.append(token_id)
        if not self.found and first_stop(self.decode(self.ids), self.stops) is not None:
            self.found = True

    def is_set(self) -> bool:
        return self.found or (self.cancel is not None and self.cancel.is_set())
