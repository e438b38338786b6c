"""Shared plumbing of the JSON contract commands (spec/README.md).

Input: one JSON object or an array of them, from FILE or standard input. Output: one JSON object
(or an array in the same order). Invalid input: exit status 2 and `{"errors": [...]}` on standard
output, naming every bad field; in an array one bad element fails the whole call, each path
prefixed by the element's index. Never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from mmis.common.errors import FieldError, InvalidInput
from mmis.common.inputs import JsonNumber

EXIT_INVALID = 2

Handler = Callable[[Any], dict]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> Any:
    return json.loads(text, parse_float=JsonNumber, parse_int=_int_or_number, parse_constant=_reject_constant)


def _int_or_number(text: str) -> int:
    return int(text)


def handle(data: Any, handler: Handler) -> Any:
    """Apply `handler` to one object or to each element of an array; raises InvalidInput."""
    if isinstance(data, list):
        if not data:
            raise InvalidInput([FieldError("", "the input array is empty")])
        results, errors = [], []
        for i, element in enumerate(data):
            try:
                results.append(_handle_one(element, handler))
            except InvalidInput as exc:
                errors.extend(exc.prefixed(f"[{i}]").errors)
        if errors:
            raise InvalidInput(errors)
        return results
    return _handle_one(data, handler)


def _handle_one(element: Any, handler: Handler) -> dict:
    if not isinstance(element, dict):
        raise InvalidInput([FieldError("", "each input must be a JSON object")])
    return handler(element)


def run(
    argv: list[str], handler: Handler, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    try:
        if len(argv) > 1:
            raise InvalidInput(
                [FieldError("", "give at most one input FILE (or none to read standard input)")]
            )
        if argv and argv[0] != "-":
            try:
                with open(argv[0], encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise InvalidInput([FieldError("", f"cannot read {argv[0]}: {exc.strerror}")]) from None
        else:
            text = stdin.read()
        try:
            data = parse_json(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput([FieldError("", f"the input is not valid JSON: {exc}")]) from None
        result = handle(data, handler)
    except InvalidInput as exc:
        stdout.write(json.dumps(exc.as_dict(), ensure_ascii=False) + "\n")
        return EXIT_INVALID
    except Exception as exc:  # never a traceback: an unexpected fault is reported in the same shape
        stdout.write(json.dumps({"errors": [{"path": "", "message": f"internal error: {exc!r}"}]}) + "\n")
        return 1
    stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    return 0
