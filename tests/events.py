"""Reading a streamed answer (text/event-stream) in tests, strictly: every event is one
`data:` line of JSON followed by a blank line, and the stream ends after a whole event."""

import json


def parse_events(text: str) -> list[dict]:
    assert text.endswith("\n\n"), f"the stream ends mid-event: {text[-200:]!r}"
    events = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        events.append(json.loads(block.removeprefix("data: ")))
    return events


def split_stream(events: list[dict]) -> tuple[list[dict], dict]:
    """The token events and the last event; everything before the last must be a token."""
    *tokens, last = events
    assert all(set(event) == {"token"} for event in tokens), tokens
    assert "token" not in last, last
    return [event["token"] for event in tokens], last
