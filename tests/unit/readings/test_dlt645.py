"""The DL/T 645-2007 codec (mmis.readings.dlt645): round trips, wake-up bytes, every error, streams."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmis.common.errors import InvalidInput
from mmis.readings import dlt645
from mmis.readings.dlt645 import (
    DATA_ITEMS,
    Control,
    Direction,
    build_error_reply,
    build_frame,
    build_read_request,
    build_reply,
    decode_frame,
    decode_stream,
    iter_frames,
    parse_hex,
    split_frames,
    to_hex,
)

ADDRESS = "123456789012"
SPEC_REPLY = "FEFEFEFE6812907856341268910833333433896745335416"


def frame_error(frame: bytes | str) -> str:
    """The single reason decode_frame gives on `frame` for a bad frame."""
    with pytest.raises(InvalidInput) as info:
        decode_frame(frame)
    assert [e.path for e in info.value.errors] == ["frame"]
    return info.value.errors[0].message


def resum(body: bytearray) -> bytes:
    """Recompute the checksum of a frame body (68 … CS 16) after editing it."""
    body[-2] = sum(body[:-2]) & 0xFF
    return bytes(body)


# --- the spec's own examples ---------------------------------------------------------------------
def test_read_request_of_the_spec() -> None:
    assert to_hex(build_read_request(ADDRESS, "00010000")) == "68129078563412681104333334336816"


def test_decode_the_spec_reply() -> None:
    frame = decode_frame(SPEC_REPLY)
    assert frame.to_dict() == {
        "address": ADDRESS,
        "control": "91",
        "direction": "reply",
        "data_id": "00010000",
        "name": "positive_active_energy_total",
        "value": "1234.56",
        "unit": "kWh",
    }
    assert frame.value == Decimal("1234.56")
    assert frame.direction is Direction.REPLY
    assert frame.raw == bytes.fromhex(SPEC_REPLY[8:])


def test_address_is_sent_lowest_pair_first() -> None:
    frame = build_read_request("123456789012", "00010000")
    assert frame[1:7] == bytes.fromhex("129078563412")


def test_block_data_id_bytes_are_hex() -> None:
    frame = build_read_request("000012345678", "0001ff00")
    assert to_hex(frame) == "6878563412000068110433323433C516"
    assert decode_frame(frame).to_dict() == {
        "address": "000012345678",
        "control": "11",
        "direction": "request",
        "data_id": "0001FF00",
    }


def test_broadcast_address_both_ways() -> None:
    frame = build_read_request("aaaaaaaaaaaa", "00010000")
    assert to_hex(frame) == "68AAAAAAAAAAAA68110433333433AE16"
    assert decode_frame(frame).address == "AAAAAAAAAAAA"


# --- round trips per data identifier -------------------------------------------------------------
SAMPLES = [
    ("00000000", "45.21"),
    ("00010000", "0.00"),
    ("00010000", "999999.99"),
    ("00010100", "312.07"),
    ("00010200", "1.50"),
    ("00010300", "100000.00"),
    ("00010400", "7.07"),
    ("00020000", "12.34"),
    ("00030000", "56.78"),
    ("02010100", "220.0"),
    ("02010100", "0.5"),
    ("02020100", "5.123"),
    ("02020100", "-5.123"),
    ("02020100", "-799.999"),
    ("02030000", "1.2345"),
    ("02030000", "-1.2345"),
    ("02030000", "79.9999"),
]


@pytest.mark.parametrize(("data_id", "value"), SAMPLES)
@pytest.mark.parametrize("more_follows", [False, True])
def test_reply_round_trip(data_id: str, value: str, more_follows: bool) -> None:
    item = DATA_ITEMS[data_id]
    frame = build_reply(ADDRESS, data_id, Decimal(value), more_follows=more_follows)
    decoded = decode_frame(frame)
    assert decoded.to_dict() == {
        "address": ADDRESS,
        "control": "B1" if more_follows else "91",
        "direction": "reply",
        "data_id": data_id,
        "name": item.name,
        "value": value,
        "unit": item.unit,
    }
    assert decoded.more_follows is more_follows


def test_value_keeps_the_decimals_of_its_format() -> None:
    assert decode_frame(build_reply(ADDRESS, "02010100", 220)).to_dict()["value"] == "220.0"
    assert decode_frame(build_reply(ADDRESS, "00010000", "0")).to_dict()["value"] == "0.00"
    assert decode_frame(build_reply(ADDRESS, "02030000", "0.1")).to_dict()["value"] == "0.1000"


def test_negative_power_sets_the_top_bit_of_the_most_significant_byte() -> None:
    frame = build_reply("000000112233", "02030000", "-1.2345")
    assert to_hex(frame) == "68332211000000689107333336357856B42116"
    value_bytes = bytes((b - 0x33) & 0xFF for b in frame[14:17])
    assert value_bytes == bytes.fromhex("452381")


def test_negative_current() -> None:
    decoded = decode_frame(build_reply(ADDRESS, "02020100", "-12.5"))
    assert decoded.value == Decimal("-12.500")
    assert decoded.to_dict()["value"] == "-12.500"
    assert decoded.unit == "A"


def test_sign_bit_on_zero_gives_plain_zero() -> None:
    body = bytearray(build_reply(ADDRESS, "02030000", "0"))
    body[-3] = (0x80 + 0x33) & 0xFF  # most significant value byte: sign bit, zero magnitude
    assert decode_frame(resum(body)).to_dict()["value"] == "0.0000"


def test_max_demand_round_trip() -> None:
    at = datetime(2026, 3, 14, 9, 30)
    frame = build_reply(ADDRESS, "01010000", "1.2345", at=at)
    assert to_hex(frame) == "6812907856341268910C33333434785634633C4736596816"
    decoded = decode_frame(frame)
    assert decoded.at == at
    assert decoded.to_dict() == {
        "address": ADDRESS,
        "control": "91",
        "direction": "reply",
        "data_id": "01010000",
        "name": "positive_active_max_demand",
        "value": "1.2345",
        "unit": "kW",
        "at": "2026-03-14T09:30",
    }


def test_max_demand_never_recorded_has_no_time() -> None:
    decoded = decode_frame(build_reply(ADDRESS, "01010000", "0"))
    assert decoded.at is None
    assert decoded.to_dict()["at"] is None
    assert decoded.to_dict()["value"] == "0.0000"


def test_max_demand_with_an_impossible_time() -> None:
    body = bytearray(build_reply(ADDRESS, "01010000", "1", at=datetime(2026, 2, 28, 0, 0)))
    body[-5] = 0x30 + 0x33  # day 28 → 30: 2026-02-30
    assert "not a real date" in frame_error(resum(body))


def test_error_reply_round_trip() -> None:
    frame = build_error_reply(ADDRESS, 0x02)
    assert to_hex(frame) == "6812907856341268D101358D16"
    decoded = decode_frame(frame)
    assert decoded.to_dict() == {
        "address": ADDRESS,
        "control": "D1",
        "direction": "error_reply",
        "error_code": "02",
    }
    assert decoded.error_flags == ["no_data_requested"]
    assert decode_frame(build_error_reply(ADDRESS, 0x05)).error_flags == ["other_error", "password_error"]


def test_read_request_round_trip_known_and_unknown() -> None:
    for data_id, item in DATA_ITEMS.items():
        decoded = decode_frame(build_read_request(ADDRESS, data_id))
        assert decoded.to_dict() == {
            "address": ADDRESS,
            "control": "11",
            "direction": "request",
            "data_id": data_id,
            "name": item.name,
        }
    assert "name" not in decode_frame(build_read_request(ADDRESS, "04000101")).to_dict()


def test_unknown_data_id_gives_value_null_and_raw_data() -> None:
    frame = build_frame(ADDRESS, Control.REPLY, bytes.fromhex("01010004") + bytes.fromhex("06140326"))
    assert to_hex(frame) == "6812907856341268910834343337394736590016"
    assert decode_frame(frame).to_dict() == {
        "address": ADDRESS,
        "control": "91",
        "direction": "reply",
        "data_id": "04000101",
        "value": None,
        "data": "06140326",
    }


def test_block_reply_is_an_unknown_di_with_its_data() -> None:
    payload = bytes.fromhex("00FF0100") + bytes.fromhex("56341200") * 5
    decoded = decode_frame(build_frame(ADDRESS, Control.REPLY, payload))
    assert decoded.to_dict()["data"] == "56341200" * 5
    assert decoded.value is None


# --- wake-up bytes and hex text ------------------------------------------------------------------
@pytest.mark.parametrize("wakeup", [0, 1, 2, 3, 4])
def test_up_to_four_wakeup_bytes(wakeup: int) -> None:
    frame = build_reply(ADDRESS, "00010000", "1234.56", wakeup=wakeup)
    assert frame[:wakeup] == b"\xfe" * wakeup
    assert decode_frame(frame).value == Decimal("1234.56")


def test_five_wakeup_bytes_are_too_many() -> None:
    message = frame_error("FE" + SPEC_REPLY)
    assert "start byte 68" in message
    assert "at most four" in message


def test_hex_text_with_spaces_and_lower_case() -> None:
    spaced = " ".join(SPEC_REPLY[i : i + 2] for i in range(0, len(SPEC_REPLY), 2)).lower()
    assert decode_frame(spaced) == decode_frame(SPEC_REPLY)
    assert parse_hex("fe fe\n68") == b"\xfe\xfe\x68"


# --- every error ---------------------------------------------------------------------------------
GOOD = bytes.fromhex("6812907856341268910833333433896745335416")


def test_bad_checksum() -> None:
    bad = GOOD[:-2] + bytes([(GOOD[-2] + 1) & 0xFF]) + GOOD[-1:]
    message = frame_error(bad)
    assert "checksum" in message
    assert "54" in message


def test_checksum_covers_every_byte_from_the_first_68() -> None:
    body = bytearray(GOOD)
    body[3] ^= 0x01  # an address byte
    assert "checksum" in frame_error(bytes(body))


def test_missing_start_byte() -> None:
    assert "missing start byte 68" in frame_error(b"\x69" + GOOD[1:])


def test_missing_second_start_byte() -> None:
    body = bytearray(GOOD)
    body[7] = 0x67
    assert "second start byte 68" in frame_error(resum(body))


def test_missing_end_byte() -> None:
    assert "missing end byte 16" in frame_error(GOOD[:-1])
    assert "missing end byte 16" in frame_error(GOOD[:-1] + b"\x17")


def test_l_not_matching_the_data() -> None:
    body = bytearray(GOOD)
    body[9] = 0x09
    message = frame_error(bytes(body))
    assert "L is 9" in message
    assert "8 data bytes" in message


def test_l_larger_than_the_frame() -> None:
    body = bytearray(GOOD)
    body[9] = 0x20
    assert "L is 32" in frame_error(bytes(body))


def test_bytes_after_the_end() -> None:
    assert "after its end byte" in frame_error(GOOD + GOOD)


def test_non_bcd_address() -> None:
    body = bytearray(GOOD)
    body[1] = 0x1F
    message = frame_error(resum(body))
    assert "address" in message
    assert "not BCD" in message


def test_non_bcd_value() -> None:
    assert "not BCD" in frame_error("68129078563412689108333334334D6745331816")


def test_non_bcd_value_after_the_sign_bit() -> None:
    body = bytearray(build_reply(ADDRESS, "02030000", "-1.2345"))
    body[-3] = (0x8A + 0x33) & 0xFF  # sign bit + non-BCD 0A in the most significant byte
    assert "not BCD" in frame_error(resum(body))


def test_only_current_and_power_have_a_sign_bit() -> None:
    energy = bytearray(build_reply(ADDRESS, "00010000", "1.00"))
    energy[-3] = (0x80 + 0x33) & 0xFF  # the top bit is a digit here: 80 → 800001.00
    assert decode_frame(resum(energy)).to_dict()["value"] == "800001.00"
    energy[-3] = (0xA0 + 0x33) & 0xFF
    assert "not BCD" in frame_error(resum(energy))
    power = bytearray(build_reply(ADDRESS, "02030000", "1.2345"))
    power[-3] = (0xA0 + 0x33) & 0xFF  # sign bit + 20 → -20.2345
    assert decode_frame(resum(power)).to_dict()["value"] == "-20.2345"


def test_known_di_with_the_wrong_data_length() -> None:
    frame = build_frame(ADDRESS, Control.REPLY, bytes.fromhex("00000100") + b"\x00\x00\x00")
    assert "has 4 data bytes after the DI" in frame_error(frame)


def test_unsupported_control_code() -> None:
    frame = build_frame(ADDRESS, 0x14, bytes.fromhex("00000100"))
    assert "control code 14" in frame_error(frame)


def test_reply_without_a_full_data_id() -> None:
    assert "4-byte data identifier" in frame_error(build_frame(ADDRESS, Control.REPLY, b"\x00\x01"))


def test_error_reply_with_more_than_one_byte() -> None:
    assert "one error byte" in frame_error(build_frame(ADDRESS, Control.ERROR_REPLY, b"\x02\x00"))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("FEFE", "only FE"),
        ("6812", "too short"),
        ("68 12 9", "odd number"),
        ("68zz", "not hexadecimal"),
    ],
)
def test_unreadable_input(text: str, reason: str) -> None:
    assert reason in frame_error(text)


def test_decode_rejects_non_text_non_bytes() -> None:
    assert "hexadecimal" in frame_error(12345)  # type: ignore[arg-type]


# --- builders reject bad arguments ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"address": "12345678901F"}, "address"),
        ({"address": "1234567890"}, "address"),
        ({"address": "AAAAAAAAAAA1"}, "address"),
        ({"data_id": "0001000"}, "data_id"),
        ({"data_id": "0001000G"}, "data_id"),
        ({"data_id": "04000101"}, "data_id"),  # not in the table: no known format
        ({"value": "1.234"}, "value"),  # three decimals for XXXXXX.XX
        ({"value": "-1.00"}, "value"),  # energy is never negative
        ({"value": "1000000.00"}, "value"),
        ({"value": "abc"}, "value"),
        ({"value": 1.5}, "value"),  # binary floats are refused
        ({"value": "NaN"}, "value"),
        ({"at": datetime(2026, 1, 1)}, "at"),  # energy carries no time
    ],
)
def test_build_reply_rejects(kwargs: dict, path: str) -> None:
    args = {"address": ADDRESS, "data_id": "00010000", "value": "1.00", **kwargs}
    with pytest.raises(InvalidInput) as info:
        build_reply(args.pop("address"), args.pop("data_id"), args.pop("value"), **args)
    assert [e.path for e in info.value.errors] == [path]


def test_signed_formats_hold_one_digit_less_at_the_top() -> None:
    with pytest.raises(InvalidInput, match=r"79\.9999"):
        build_reply(ADDRESS, "02030000", "80.0000")
    with pytest.raises(InvalidInput, match=r"799\.999"):
        build_reply(ADDRESS, "02020100", "-800")


def test_max_demand_year_outside_yy() -> None:
    with pytest.raises(InvalidInput) as info:
        build_reply(ADDRESS, "01010000", "1", at=datetime(1999, 12, 31, 23, 59))
    assert info.value.errors[0].path == "at"


@pytest.mark.parametrize("code", [-1, 256, True, "02"])
def test_error_reply_code_must_be_a_byte(code: object) -> None:
    with pytest.raises(InvalidInput):
        build_error_reply(ADDRESS, code)  # type: ignore[arg-type]


def test_build_frame_limits() -> None:
    with pytest.raises(InvalidInput):
        build_frame(ADDRESS, Control.REPLY, bytes(256))
    with pytest.raises(InvalidInput):
        build_frame(ADDRESS, Control.REPLY, b"", wakeup=5)
    assert len(build_frame(ADDRESS, Control.REPLY, bytes(255))) == 12 + 255


# --- streams -------------------------------------------------------------------------------------
def test_stream_of_several_frames() -> None:
    frames = [
        build_read_request(ADDRESS, "00010000", wakeup=4),
        build_reply(ADDRESS, "00010000", "1234.56", wakeup=2),
        build_reply(ADDRESS, "02030000", "-0.5"),
        build_reply(ADDRESS, "01010000", "3.2", at=datetime(2026, 1, 2, 3, 4), wakeup=1),
        build_error_reply(ADDRESS),
    ]
    stream = b"".join(frames)
    decoded = decode_stream(stream)
    assert [f.control for f in decoded] == [
        Control.READ,
        Control.REPLY,
        Control.REPLY,
        Control.REPLY,
        Control.ERROR_REPLY,
    ]
    assert [f.to_dict().get("value") for f in decoded[1:4]] == ["1234.56", "-0.5000", "3.2000"]
    assert split_frames(stream) == [f.lstrip(b"\xfe") for f in frames]
    assert decode_stream(to_hex(stream).lower()) == decoded
    assert [f.to_dict() for f in decode_stream(" ".join(to_hex(f) for f in frames))] == [
        f.to_dict() for f in decoded
    ]


def test_empty_stream() -> None:
    assert decode_stream(b"") == []
    assert decode_stream("") == []


def test_stream_yields_frames_before_a_bad_one() -> None:
    bad = bytearray(build_reply(ADDRESS, "00010000", "1.00"))
    bad[-2] ^= 0xFF
    stream = build_reply(ADDRESS, "00010000", "2.00") + bytes(bad)
    frames = iter_frames(stream)
    assert next(frames).value == Decimal("2.00")
    with pytest.raises(InvalidInput) as info:
        next(frames)
    assert info.value.errors[0].path == "frame"
    assert info.value.errors[0].message.startswith("frame 2 (byte 20): bad checksum")


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (GOOD + b"\xfe\xfe", "ends with FE"),
        (GOOD + b"\x00", "missing start byte 68"),
        (GOOD + GOOD[:8], "header"),
        (GOOD + GOOD[:-1], "short of the frame's end"),
    ],
)
def test_stream_errors(stream: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_stream(stream)
    assert info.value.errors[0].path == "frame"
    assert reason in info.value.errors[0].message
    assert info.value.errors[0].message.startswith("frame 2 ")


# --- properties ----------------------------------------------------------------------------------
addresses = st.one_of(
    st.just("AAAAAAAAAAAA"),
    st.integers(min_value=0, max_value=10**12 - 1).map(lambda n: f"{n:012d}"),
)


@st.composite
def item_and_value(draw: st.DrawFn) -> tuple[dlt645.DataItem, Decimal]:
    item = draw(st.sampled_from(list(DATA_ITEMS.values())))
    scaled_max = int(item.max_magnitude.scaleb(item.decimals))
    magnitude = draw(st.integers(min_value=0, max_value=scaled_max))
    negative = item.signed and draw(st.booleans())
    value = Decimal(-magnitude if negative else magnitude).scaleb(-item.decimals)
    return item, value


@given(
    address=addresses,
    case=item_and_value(),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59)),
    more=st.booleans(),
    wakeup=st.integers(min_value=0, max_value=4),
)
def test_value_round_trip(
    address: str, case: tuple[dlt645.DataItem, Decimal], at: datetime, more: bool, wakeup: int
) -> None:
    item, value = case
    at = at.replace(second=0, microsecond=0)
    frame = build_reply(
        address, item.data_id, value, at=at if item.with_time else None, more_follows=more, wakeup=wakeup
    )
    decoded = decode_frame(to_hex(frame))
    assert decoded.address == address
    assert decoded.data_id == item.data_id
    assert decoded.value == value
    text = decoded.to_dict()["value"]
    assert Decimal(text) == value
    assert len(text.split(".")[1]) == item.decimals
    if item.with_time:
        assert decoded.at == at
    assert decode_frame(frame) == decoded


@given(
    frame=st.builds(
        lambda a, d, v: build_reply(a, d, v),
        addresses,
        st.sampled_from(["00010000", "00020000"]),
        st.integers(min_value=0, max_value=99999999).map(lambda n: Decimal(n).scaleb(-2)),
    ),
    position=st.integers(min_value=0, max_value=19),
    delta=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_is_detected(frame: bytes, position: int, delta: int) -> None:
    corrupted = bytearray(frame)
    corrupted[position] = (corrupted[position] + delta) & 0xFF
    with pytest.raises(InvalidInput):
        decode_frame(bytes(corrupted))
