"""DL/T 645-2007 frames: build and decode (spec/dlt645.md).

A pure module: standard library and `mmis.common` only, no Django, no I/O, no clock. It serves the
`python -m mmis dlt645` contract, the MQTT listener (terminals that forward raw meter frames in
hex) and the AMI simulator (which answers read requests with replies built here).

A frame is ``68 A0…A5 68 C L DATA CS 16``, optionally preceded by up to four ``FE`` wake-up bytes:

- A0…A5: the meter address, 12 BCD digits, lowest pair first; ``AAAAAAAAAAAA`` is the wildcard.
- C: the control code: ``11`` read, ``91`` normal reply, ``B1`` normal reply with more frames
  following, ``D1`` error reply (one data byte: the error flags).
- L: the number of DATA bytes; every DATA byte travels plus 0x33 (modulo 256).
- CS: the sum modulo 256 of every byte from the first ``68`` to the end of DATA.
- A data identifier (DI) is written ``DI3 DI2 DI1 DI0`` (``00010000``) and sent DI0 first; its bytes
  are plain hex (block DIs such as ``0001FF00``). Values are BCD, lowest byte first.

Every defect of a frame raises `InvalidInput` on the path ``frame`` with a reason that says what
is wrong (bad checksum, missing start or end byte, L not matching the data, non-BCD address or
value, …). Builders raise `InvalidInput` on ``address``, ``data_id``, ``value``, ``at`` or
``error_code``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import IntEnum, StrEnum
from typing import Any

from mmis.common.errors import InvalidInput

__all__ = [
    "BROADCAST_ADDRESS",
    "DATA_ITEMS",
    "ERROR_FLAGS",
    "MAX_WAKEUP",
    "Control",
    "DataItem",
    "Direction",
    "Frame",
    "build_error_reply",
    "build_frame",
    "build_read_request",
    "build_reply",
    "decode_frame",
    "decode_stream",
    "iter_frames",
    "normalize_address",
    "normalize_data_id",
    "parse_hex",
    "split_frames",
    "to_hex",
]

START = 0x68
END = 0x16
WAKEUP = 0xFE
OFFSET = 0x33
MAX_WAKEUP = 4
MIN_FRAME = 12  # 68 A×6 68 C L CS 16 with no data
MAX_DATA = 255
BROADCAST_ADDRESS = "AAAAAAAAAAAA"

FRAME = "frame"


class Control(IntEnum):
    """The control codes MMIS reads and writes."""

    READ = 0x11
    REPLY = 0x91
    REPLY_MORE = 0xB1
    ERROR_REPLY = 0xD1

    @property
    def hex(self) -> str:
        return f"{self.value:02X}"


class Direction(StrEnum):
    REQUEST = "request"
    REPLY = "reply"
    ERROR_REPLY = "error_reply"


_DIRECTION = {
    Control.READ: Direction.REQUEST,
    Control.REPLY: Direction.REPLY,
    Control.REPLY_MORE: Direction.REPLY,
    Control.ERROR_REPLY: Direction.ERROR_REPLY,
}

# Bits of the error byte of a D1 reply (DL/T 645-2007 §7.1, error information word).
ERROR_FLAGS: dict[int, str] = {
    0x01: "other_error",
    0x02: "no_data_requested",
    0x04: "password_error",
    0x08: "baud_rate_not_changeable",
    0x10: "year_zones_exceeded",
    0x20: "day_slots_exceeded",
    0x40: "rates_exceeded",
}


@dataclass(frozen=True, slots=True)
class DataItem:
    """One data identifier of the table in spec/dlt645.md and its value format."""

    data_id: str
    name: str
    unit: str
    integer_digits: int
    decimals: int
    signed: bool = False  # the top bit of the most significant value byte is the sign
    with_time: bool = False  # the value is followed by a YYMMDDhhmm time (maximum demand)

    @property
    def value_length(self) -> int:
        return (self.integer_digits + self.decimals) // 2

    @property
    def data_length(self) -> int:
        """Bytes after the DI in a reply."""
        return self.value_length + (5 if self.with_time else 0)

    @property
    def format(self) -> str:
        text = "X" * self.integer_digits + "." + "X" * self.decimals
        return text + (" then YYMMDDhhmm" if self.with_time else "")

    @property
    def max_magnitude(self) -> Decimal:
        """The largest absolute value the format can carry (79.9999 kW when the top bit is the sign)."""
        digits = self.integer_digits + self.decimals
        top = 7 if self.signed else 9
        return Decimal(str(top) + "9" * (digits - 1)).scaleb(-self.decimals)


def _item(data_id: str, name: str, fmt: str, unit: str, **kw: bool) -> DataItem:
    whole, _, frac = fmt.partition(".")
    return DataItem(data_id, name, unit, len(whole), len(frac), **kw)


DATA_ITEMS: dict[str, DataItem] = {
    item.data_id: item
    for item in (
        _item("00000000", "combined_active_energy_total", "XXXXXX.XX", "kWh"),
        _item("00010000", "positive_active_energy_total", "XXXXXX.XX", "kWh"),
        _item("00010100", "positive_active_energy_rate1", "XXXXXX.XX", "kWh"),  # sharp 尖
        _item("00010200", "positive_active_energy_rate2", "XXXXXX.XX", "kWh"),  # peak 峰
        _item("00010300", "positive_active_energy_rate3", "XXXXXX.XX", "kWh"),  # flat 平
        _item("00010400", "positive_active_energy_rate4", "XXXXXX.XX", "kWh"),  # valley 谷
        _item("00020000", "reverse_active_energy_total", "XXXXXX.XX", "kWh"),
        _item("00030000", "combined_reactive1_energy_total", "XXXXXX.XX", "kvarh"),
        _item("02010100", "phase_a_voltage", "XXX.X", "V"),
        _item("02020100", "phase_a_current", "XXX.XXX", "A", signed=True),
        _item("02030000", "active_power_total", "XX.XXXX", "kW", signed=True),
        _item("01010000", "positive_active_max_demand", "XX.XXXX", "kW", with_time=True),
    )
}


@dataclass(frozen=True, slots=True)
class Frame:
    """A decoded frame. `to_dict()` gives the output of `python -m mmis dlt645` (spec/dlt645.md)."""

    address: str
    control: Control
    data_id: str | None = None  # requests and replies
    item: DataItem | None = None  # the DI's table entry, when the DI is known
    value: Decimal | None = None  # replies with a known DI
    at: datetime | None = None  # maximum demand: when it occurred (None when the meter sent zeros)
    data: bytes = b""  # reply: the bytes after the DI, 0x33 removed, in frame order
    error_code: int | None = None  # error replies: the error byte, 0x33 removed
    raw: bytes = b""  # the frame itself, from the first 68 to the 16 (wake-up bytes dropped)

    @property
    def direction(self) -> Direction:
        return _DIRECTION[self.control]

    @property
    def name(self) -> str | None:
        return self.item.name if self.item else None

    @property
    def unit(self) -> str | None:
        return self.item.unit if self.item else None

    @property
    def more_follows(self) -> bool:
        return self.control is Control.REPLY_MORE

    @property
    def error_flags(self) -> list[str]:
        """Names of the bits set in an error reply's error byte."""
        if self.error_code is None:
            return []
        return [name for bit, name in ERROR_FLAGS.items() if self.error_code & bit]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address,
            "control": self.control.hex,
            "direction": self.direction.value,
        }
        if self.control is Control.ERROR_REPLY:
            out["error_code"] = f"{self.error_code:02X}"
            return out
        out["data_id"] = self.data_id
        if self.direction is Direction.REQUEST:
            if self.item is not None:
                out["name"] = self.item.name
            return out
        if self.item is None:
            out["value"] = None
            out["data"] = self.data.hex().upper()
            return out
        assert self.value is not None
        out["name"] = self.item.name
        out["value"] = format(self.value, "f")
        out["unit"] = self.item.unit
        if self.item.with_time:
            out["at"] = self.at.strftime("%Y-%m-%dT%H:%M") if self.at else None
        return out


# --- text ⇄ bytes --------------------------------------------------------------------------------
_WHITESPACE = re.compile(r"\s+")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_ADDRESS = re.compile(r"\d{12}|[Aa]{12}")
_DATA_ID = re.compile(r"[0-9A-Fa-f]{8}")


def parse_hex(text: str, *, path: str = FRAME) -> bytes:
    """Hex text to bytes; spaces (any whitespace) and lower case are accepted."""
    if not isinstance(text, str):
        raise InvalidInput("must be a string of hexadecimal digits", path)
    compact = _WHITESPACE.sub("", text)
    if not _HEX.fullmatch(compact):
        bad = next(ch for ch in compact if ch not in "0123456789abcdefABCDEF")
        raise InvalidInput(f"is not hexadecimal: {bad!r} is not a hex digit", path)
    if len(compact) % 2:
        raise InvalidInput(
            f"has an odd number of hex digits ({len(compact)}): every byte is two digits", path
        )
    return bytes.fromhex(compact)


def to_hex(frame: bytes) -> str:
    """Upper-case hex, no spaces (the contract's output form)."""
    return frame.hex().upper()


def normalize_address(address: str, *, path: str = "address") -> str:
    """12 decimal digits, or the wildcard AAAAAAAAAAAA (any case); returned upper case."""
    if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
        raise InvalidInput(f"must be 12 decimal digits or {BROADCAST_ADDRESS}, not {address!r}", path)
    return address.upper()


def normalize_data_id(data_id: str, *, path: str = "data_id") -> str:
    """8 hex digits (DI3 DI2 DI1 DI0, e.g. 00010000 or the block DI 0001FF00); returned upper case."""
    if not isinstance(data_id, str) or not _DATA_ID.fullmatch(data_id):
        raise InvalidInput(f"must be 8 hexadecimal digits such as 00010000, not {data_id!r}", path)
    return data_id.upper()


def _address_bytes(address: str) -> bytes:
    return bytes.fromhex(normalize_address(address))[::-1]


def _di_bytes(data_id: str) -> bytes:
    return bytes.fromhex(normalize_data_id(data_id))[::-1]


# --- building ------------------------------------------------------------------------------------
def build_frame(address: str, control: int, data: bytes = b"", *, wakeup: int = 0) -> bytes:
    """A frame around `data` (given without the 0x33 offset), with `wakeup` leading FE bytes (0–4)."""
    if not 0 <= control <= 0xFF:
        raise InvalidInput(f"must be one byte, not {control}", "control")
    if len(data) > MAX_DATA:
        raise InvalidInput(f"a frame carries at most {MAX_DATA} data bytes, not {len(data)}", "data")
    if not 0 <= wakeup <= MAX_WAKEUP:
        raise InvalidInput(f"at most {MAX_WAKEUP} wake-up bytes, not {wakeup}", "wakeup")
    body = bytearray([START, *_address_bytes(address), START, control, len(data)])
    body += bytes((b + OFFSET) & 0xFF for b in data)
    body.append(sum(body) & 0xFF)
    body.append(END)
    return bytes([WAKEUP] * wakeup) + bytes(body)


def build_read_request(address: str, data_id: str, *, wakeup: int = 0) -> bytes:
    """A read-data request (control 11) for one DI."""
    return build_frame(address, Control.READ, _di_bytes(data_id), wakeup=wakeup)


def build_reply(
    address: str,
    data_id: str,
    value: Decimal | str | int,
    *,
    at: datetime | None = None,
    more_follows: bool = False,
    wakeup: int = 0,
) -> bytes:
    """A normal reply (control 91, or B1 with `more_follows`) carrying `value` for a known DI.

    `value` must fit the DI's format exactly (no more decimals than it has; a negative value only
    for current and active power). For maximum demand, `at` is when it occurred (minutes); None
    sends the zeros a meter sends before any demand has been recorded.
    """
    di = normalize_data_id(data_id)
    item = DATA_ITEMS.get(di)
    if item is None:
        raise InvalidInput(f"{di} is not in the table of known data identifiers; use build_frame", "data_id")
    payload = _di_bytes(di) + _encode_value(item, value)
    if item.with_time:
        payload += _encode_time(at)
    elif at is not None:
        raise InvalidInput(f"{item.name} carries no time", "at")
    control = Control.REPLY_MORE if more_follows else Control.REPLY
    return build_frame(address, control, payload, wakeup=wakeup)


def build_error_reply(address: str, error_code: int = 0x02, *, wakeup: int = 0) -> bytes:
    """An error reply (control D1) with one error byte (see ERROR_FLAGS; 02 = no data requested)."""
    if isinstance(error_code, bool) or not isinstance(error_code, int) or not 0 <= error_code <= 0xFF:
        raise InvalidInput(f"must be one byte (0–255), not {error_code!r}", "error_code")
    return build_frame(address, Control.ERROR_REPLY, bytes([error_code]), wakeup=wakeup)


def _encode_value(item: DataItem, value: Decimal | str | int) -> bytes:
    if isinstance(value, bool | float):
        raise InvalidInput(f"must be a Decimal, a decimal string or an int, not {value!r}", "value")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"is not a number: {value!r}", "value") from None
    if not number.is_finite():
        raise InvalidInput(f"must be a finite decimal, not {value!r}", "value")
    scaled = number.scaleb(item.decimals)
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"{item.name} has {item.decimals} decimals ({item.format}); {value} has more", "value"
        )
    if number < 0 and not item.signed:
        raise InvalidInput(f"{item.name} cannot be negative", "value")
    if abs(number) > item.max_magnitude:
        raise InvalidInput(f"{item.name} ({item.format}) holds at most {item.max_magnitude}", "value")
    digits = f"{abs(int(scaled)):0{2 * item.value_length}d}"
    out = bytearray(bytes.fromhex(digits)[::-1])
    if number < 0:
        out[-1] |= 0x80
    return bytes(out)


def _encode_time(at: datetime | None) -> bytes:
    if at is None:
        return bytes(5)
    if not 2000 <= at.year <= 2099:
        raise InvalidInput(f"the year must be 2000–2099 (YYMMDDhhmm), not {at.year}", "at")
    return bytes.fromhex(at.strftime("%y%m%d%H%M"))[::-1]


# --- decoding ------------------------------------------------------------------------------------
def _bad(reason: str) -> InvalidInput:
    return InvalidInput(reason, FRAME)


def _bcd_digits(data: bytes, what: str) -> str:
    """BCD bytes, lowest first, to their digits, most significant first."""
    digits = data[::-1].hex().upper()
    if not digits.isdigit():
        raise _bad(f"{what} is not BCD: {digits} (each byte must be two decimal digits, lowest byte first)")
    return digits


def _frame_bytes(frame: bytes | bytearray | str) -> bytes:
    if isinstance(frame, str):
        return parse_hex(frame)
    if isinstance(frame, bytes | bytearray | memoryview):
        return bytes(frame)
    raise _bad("must be bytes or a string of hexadecimal digits")


def _skip_wakeup(data: bytes, start: int = 0) -> int:
    """Index of the first byte after at most four FE bytes."""
    i = start
    while i < len(data) and i - start < MAX_WAKEUP and data[i] == WAKEUP:
        i += 1
    return i


def decode_frame(frame: bytes | bytearray | str) -> Frame:
    """Decode one frame (bytes, or hex text with spaces and lower case accepted).

    Up to four FE wake-up bytes may precede it; nothing may follow it (see `decode_stream` for
    several frames in a row). Raises `InvalidInput` on `frame` for any defect.
    """
    data = _frame_bytes(frame)
    begin = _skip_wakeup(data)
    if begin == len(data):
        raise _bad("is empty" if not data else "holds only FE wake-up bytes, no frame")
    if data[begin] != START:
        extra = " (at most four FE wake-up bytes may precede it)" if data[begin] == WAKEUP else ""
        raise _bad(f"missing start byte 68: the frame begins with {data[begin]:02X}{extra}")
    return _decode(data[begin:])


def _decode(body: bytes) -> Frame:
    """Decode `body`, which starts at the first 68 and should end at the 16."""
    if len(body) < MIN_FRAME:
        end_hint = "" if body[-1:] == bytes([END]) else "; missing end byte 16"
        raise _bad(f"is too short: {len(body)} bytes, a frame has at least {MIN_FRAME}{end_hint}")
    if body[7] != START:
        raise _bad(f"missing the second start byte 68 after the address: found {body[7]:02X} at byte 8")
    length = body[9]
    expected = MIN_FRAME + length
    if len(body) > expected and body[expected - 1] == END:
        raise _bad(
            f"has {len(body) - expected} bytes after its end byte 16 (L = {length}); "
            "several frames in a row must be decoded as a stream"
        )
    if body[-1] != END:
        size = "" if len(body) == expected else f"; L = {length} means {expected} bytes, it has {len(body)}"
        raise _bad(f"missing end byte 16: the frame ends with {body[-1]:02X}{size}")
    if len(body) != expected:
        carried = len(body) - MIN_FRAME
        raise _bad(f"L is {length} ({length:02X}) but the frame carries {carried} data bytes")
    checksum = sum(body[: 10 + length]) & 0xFF
    if checksum != body[10 + length]:
        raise _bad(f"bad checksum: the frame says {body[10 + length]:02X}, its bytes sum to {checksum:02X}")

    raw_address = body[1:7]
    wildcard = raw_address == b"\xaa" * 6
    address = BROADCAST_ADDRESS if wildcard else _bcd_digits(raw_address, "the address")
    try:
        control = Control(body[8])
    except ValueError:
        known = ", ".join(c.hex for c in Control)
        raise _bad(f"control code {body[8]:02X} is not supported (known: {known})") from None
    payload = bytes((b - OFFSET) & 0xFF for b in body[10 : 10 + length])

    if control is Control.ERROR_REPLY:
        if length != 1:
            raise _bad(f"an error reply (D1) carries one error byte, but L is {length}")
        return Frame(address=address, control=control, error_code=payload[0], raw=body)

    if length < 4:
        raise _bad(f"a {control.hex} frame starts its data with a 4-byte data identifier, but L is {length}")
    data_id = payload[3::-1].hex().upper()
    item = DATA_ITEMS.get(data_id)
    rest = payload[4:]
    if control is Control.READ:
        return Frame(address=address, control=control, data_id=data_id, item=item, data=rest, raw=body)
    if item is None:
        return Frame(address=address, control=control, data_id=data_id, data=rest, raw=body)
    if len(rest) != item.data_length:
        raise _bad(
            f"{item.name} ({data_id}) has {item.data_length} data bytes after the DI "
            f"({item.format}), this frame has {len(rest)}"
        )
    value = _decode_value(item, rest[: item.value_length])
    at = _decode_time(rest[item.value_length :]) if item.with_time else None
    return Frame(
        address=address, control=control, data_id=data_id, item=item, value=value, at=at, data=rest, raw=body
    )


def _decode_value(item: DataItem, data: bytes) -> Decimal:
    negative = False
    if item.signed and data[-1] & 0x80:
        negative = True
        data = data[:-1] + bytes([data[-1] & 0x7F])
    digits = _bcd_digits(data, f"the value of {item.name}")
    magnitude = int(digits)
    sign = 1 if negative and magnitude else 0
    return Decimal((sign, tuple(int(d) for d in str(magnitude)), -item.decimals))


def _decode_time(data: bytes) -> datetime | None:
    digits = _bcd_digits(data, "the maximum demand time")
    if digits == "0" * 10:
        return None
    yy, mo, dd, hh, mi = (int(digits[i : i + 2]) for i in range(0, 10, 2))
    try:
        return datetime(2000 + yy, mo, dd, hh, mi)  # the meter's local wall clock
    except ValueError:
        raise _bad(f"the maximum demand time {digits} (YYMMDDhhmm) is not a real date and time") from None


# --- streams -------------------------------------------------------------------------------------
def split_frames(stream: bytes | bytearray | str) -> list[bytes]:
    """Split concatenated frames (each may have up to four FE bytes before it) using each frame's L.

    Returns each frame from its first 68 to its 16, unchecked beyond its length (decode each with
    `decode_frame`). Raises `InvalidInput` on `frame` when a frame does not start with 68 or the
    stream ends inside a frame.
    """
    return [body for _, body in _split(_frame_bytes(stream))]


def _split(data: bytes) -> Iterator[tuple[int, bytes]]:
    i = 0
    index = 0
    while i < len(data):
        begin = _skip_wakeup(data, i)
        if begin == len(data):
            raise _bad(f"frame {index + 1} (byte {i}): the stream ends with FE wake-up bytes and no frame")
        if data[begin] != START:
            raise _bad(f"frame {index + 1} (byte {begin}): missing start byte 68, found {data[begin]:02X}")
        if begin + 10 > len(data):
            raise _bad(f"frame {index + 1} (byte {begin}): the stream ends inside the frame header")
        end = begin + MIN_FRAME + data[begin + 9]
        if end > len(data):
            raise _bad(
                f"frame {index + 1} (byte {begin}): L is {data[begin + 9]} but the stream ends "
                f"{end - len(data)} bytes short of the frame's end"
            )
        yield begin, data[begin:end]
        i = end
        index += 1


def iter_frames(stream: bytes | bytearray | str) -> Iterator[Frame]:
    """Decode concatenated frames one by one (bytes or hex text).

    Frames before a defect are yielded; the defect raises `InvalidInput` on `frame`, its reason
    prefixed with the frame's number and byte offset in the stream.
    """
    for index, (begin, body) in enumerate(_split(_frame_bytes(stream)), start=1):
        try:
            yield _decode(body)
        except InvalidInput as exc:
            reason = "; ".join(e.message for e in exc.errors)
            raise _bad(f"frame {index} (byte {begin}): {reason}") from None


def decode_stream(stream: bytes | bytearray | str) -> list[Frame]:
    """Every frame of a stream of concatenated frames; see `iter_frames`."""
    return list(iter_frames(stream))
