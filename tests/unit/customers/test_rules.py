from decimal import Decimal

import pytest

from mmis.customers import rules


@pytest.mark.parametrize("value", ["11010519491231002X", "110105194912310029"[:17] + "X"])
def test_valid_resident_id(value):
    if rules.resident_id_check_digit(value[:17]) == value[17]:
        assert rules.check_resident_id(value) is None


def test_resident_id_wrong_check_digit_names_the_right_one():
    assert (
        rules.check_resident_id("110105194912310021")
        == "wrong check digit: the last character should be X, not 1"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1101051949123100", "18 characters"),
        ("11010519491331002X", "not a real date"),
        ("1101051949123A002X", "17 digits"),
    ],
)
def test_resident_id_other_reasons(value, reason):
    assert reason in rules.check_resident_id(value)


def test_credit_code_check_character():
    assert rules.check_credit_code("91350100M000100Y43") is None
    assert rules.check_credit_code("91350100M000100Y42") == (
        "wrong check character: the last character should be 3, not 2"
    )
    assert "cannot contain" in rules.check_credit_code("91350100M000100I43")


@pytest.mark.parametrize("phone", ["13912345678", "+86 139-1234-5678", "0571-88888888", "010 12345678"])
def test_phone_accepts_mobile_and_landline(phone):
    assert rules.check_phone(phone) is None


@pytest.mark.parametrize("phone", ["12912345678", "1391234567", "abc"])
def test_phone_rejects(phone):
    assert rules.check_phone(phone) is not None


def test_multiplier_from_ct_and_pt():
    # DOMAIN §2.1: CT 200/5 and PT 10000/100 → 40 × 100 = 4000
    m = rules.multiplier(
        ct_primary=Decimal(200), ct_secondary=Decimal(5), pt_primary=Decimal(10000), pt_secondary=Decimal(100)
    )
    assert m == Decimal(4000)


def test_masks():
    assert rules.mask_id_number("11010519491231002X") == "1101**********002X"
    assert rules.mask_phone("13912345678") == "139****5678"


def test_low_voltage_capacity_limit():
    assert rules.check_capacity(usage_category="general_ci", voltage_level="380V", capacity_kva=Decimal(600))
    assert (
        rules.check_capacity(usage_category="general_ci", voltage_level="10kV", capacity_kva=Decimal(600))
        is None
    )
