from datetime import date
from decimal import Decimal

import pytest

from mmis.common.crypto import FieldCipher, mask
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.money import from_fen, money_str, round_fen, to_fen
from mmis.common.periods import Period, month_periods


def test_round_fen_half_up_both_signs():
    assert round_fen(Decimal("0.005")) == Decimal("0.01")
    assert round_fen(Decimal("-0.005")) == Decimal("-0.01")
    assert round_fen(Decimal("114.8490")) == Decimal("114.85")
    assert money_str(Decimal("270.6")) == "270.60"


def test_fen_conversion_refuses_fractions():
    assert to_fen(Decimal("12.34")) == 1234
    assert from_fen(-5) == Decimal("-0.05")
    with pytest.raises(ValueError):
        to_fen(Decimal("0.001"))


def test_period_is_half_open():
    march = Period.month(2026, 3)
    assert march.days == 31
    assert date(2026, 3, 31) in march
    assert date(2026, 4, 1) not in march
    assert march.is_whole_month()
    assert not Period(date(2026, 3, 2), date(2026, 4, 1)).is_whole_month()
    with pytest.raises(ValueError):
        Period(date(2026, 4, 1), date(2026, 3, 1))


def test_month_periods_cut_the_range():
    parts = month_periods(date(2026, 1, 15), date(2026, 3, 10))
    assert [(p.start, p.end) for p in parts] == [
        (date(2026, 1, 15), date(2026, 2, 1)),
        (date(2026, 2, 1), date(2026, 3, 1)),
        (date(2026, 3, 1), date(2026, 3, 10)),
    ]


def test_cipher_round_trip_random_nonce_and_blind_index():
    c = FieldCipher("k1")
    a, b = c.encrypt("13912345678"), c.encrypt("13912345678")
    assert a != b  # random nonce: equal values do not look equal at rest
    assert c.decrypt(a) == "13912345678"
    assert c.blind_index("abc") == c.blind_index(" ABC ")
    assert FieldCipher("k2").blind_index("abc") != c.blind_index("abc")
    with pytest.raises(Exception):  # noqa: B017 - any authentication failure
        FieldCipher("k2").decrypt(a)


def test_mask_and_error_prefix():
    assert mask("abcdef", keep_start=1, keep_end=1) == "a****f"
    err = InvalidInput([FieldError("usage.kwh", "x"), FieldError("", "y")]).prefixed("[1]")
    assert [e.path for e in err.errors] == ["[1].usage.kwh", "[1]"]
