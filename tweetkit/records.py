"""JSON records: one input line parsed into a record (or the reason it is bad), a record
written back as one line, and the one writer of JSON lines on stdout (summaries, metrics,
trials), so that every command's stdout carries data alike."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import orjson


class Unencodable(ValueError):
    """Text that cannot be written back as UTF-8: a lone surrogate escape (\\ud800)."""


def loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits and NaN/Infinity, which Python's json
        # (and many tweet dumps) accept; only lines neither parser reads are bad.
        record = json.loads(raw)
        # It also refuses lone surrogate escapes, which Twitter API dumps do contain and
        # json accepts: such a string cannot be encoded again, so the record is bad here
        # rather than a crash when it is written.
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Unencodable("unencodable text (a lone surrogate escape)") from None
        return record


def dumps(record: Any) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # e.g. an integer beyond 64 bits, read by the json fallback
        return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_record(raw: bytes, text_field: str | None, field_type: type = str, required: Sequence[str] = ()) -> dict:
    """Parse one line into a record, or raise ValueError with the reason it is bad.

    The text field must hold a string (field_type=list: a list of strings, as the
    `tokens` of tagging data); `required` names further fields that must exist."""
    try:
        record = loads(raw)
    except Unencodable:
        raise
    except ValueError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
        raise ValueError("invalid JSON") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object (got {type(record).__name__})")
    if text_field is not None:
        if text_field not in record:
            raise ValueError(f"missing field '{text_field}'")
        value = record[text_field]
        if field_type is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"field '{text_field}' is not a list of strings")
        elif not isinstance(value, str):
            raise ValueError(f"field '{text_field}' is not a string")
    for name in required:
        if name not in record:
            raise ValueError(f"missing field '{name}'")
    return record


def bad_reason_key(reason: str) -> str:
    """The counter key of a reason: the detail after a parenthesis or 'at byte' is dropped."""
    return reason.split(" (")[0].split(" at byte")[0]


def emit_json(record: dict) -> None:
    """One JSON line on stdout, flushed at once: a reader sees each line as it comes, and a
    reader that went away (`| head`) raises BrokenPipeError here, which the CLI turns into a
    quiet exit 141."""
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
