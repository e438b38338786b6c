"""`python -m mmis dlt645 [FILE]`: build and decode DL/T 645-2007 frames (spec/dlt645.md).

Input, one object or an array of them:
- `{"op": "read_request", "address": "123456789012", "data_id": "00010000"}` → `{"frame": "68…16"}`
- `{"op": "decode", "frame": "FE FE 68 …"}` → the decoded frame (spaces and lower case accepted)

Pure: no Django, no database.
"""

from __future__ import annotations

from typing import Any

from mmis.cli import jsonio
from mmis.common.errors import InvalidInput
from mmis.common.inputs import MISSING, JsonNumber, Reader
from mmis.readings import dlt645

OPS = ("read_request", "decode")
MAX_FRAME_TEXT = 4096  # a frame is at most 4 + 12 + 255 bytes; generous room for spaces


def _text(reader: Reader, data: dict, key: str, what: str) -> str | None:
    value = data.get(key, MISSING)
    if value is MISSING or value is None:
        reader.error(key, "is required" if value is MISSING else f"must be {what}, not null")
        return None
    if not isinstance(value, str) or isinstance(value, JsonNumber):
        reader.error(key, f"must be a string: {what}")
        return None
    return value


def _checked(reader: Reader, fn: Any, value: str | None, key: str) -> str | None:
    if value is None:
        return None
    try:
        return fn(value, path=key)
    except InvalidInput as exc:
        reader.errors.extend(exc.errors)
        return None


def handle(data: dict) -> dict:
    reader = Reader()
    op = reader.choice(data, "op", OPS)
    if op is None:
        reader.raise_if_errors()
    if op == "read_request":
        address = _checked(
            reader,
            dlt645.normalize_address,
            _text(reader, data, "address", f"12 decimal digits or {dlt645.BROADCAST_ADDRESS}"),
            "address",
        )
        data_id = _checked(
            reader,
            dlt645.normalize_data_id,
            _text(reader, data, "data_id", "8 hexadecimal digits such as 00010000"),
            "data_id",
        )
        reader.raise_if_errors()
        assert address is not None and data_id is not None
        return {"frame": dlt645.to_hex(dlt645.build_read_request(address, data_id))}

    frame = _text(reader, data, "frame", "the frame in hexadecimal")
    if frame is not None and len(frame) > MAX_FRAME_TEXT:
        reader.error("frame", f"is longer than {MAX_FRAME_TEXT} characters: one frame is at most 271 bytes")
    reader.raise_if_errors()
    assert frame is not None
    return dlt645.decode_frame(frame).to_dict()


def run(argv: list[str]) -> int:
    return jsonio.run(argv, handle)
