"""JSON that means one thing: no duplicate keys, no NaN/Infinity, no stack-deep nesting."""

import json

from flask.json.provider import DefaultJSONProvider


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs):
    result = dict(pairs)
    if len(result) < len(pairs):  # linear: a body of thousands of keys costs milliseconds
        seen, duplicates = set(), set()
        for key, _ in pairs:
            (duplicates if key in seen else seen).add(key)
        shown = sorted(duplicates)[:5]
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, shown))}")
    return result


class StrictJSONProvider(DefaultJSONProvider):
    ensure_ascii = False  # Korean stays readable in responses
    sort_keys = False

    def loads(self, s, **kwargs):
        try:
            return json.loads(
                s, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant, **kwargs
            )
        except RecursionError:
            raise ValueError("JSON is nested too deeply") from None
