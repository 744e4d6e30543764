"""JSON that means one thing: no duplicate keys, no NaN/Infinity, no stack-deep nesting."""

import json

from flask.json.provider import DefaultJSONProvider


def _refuse_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, duplicates))}")
    return dict(pairs)


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
