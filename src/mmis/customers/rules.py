"""Pure checks of customer-file values: each returns None when valid, else the reason."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# GB 32100-2015 unified social credit code: 18 chars from this alphabet (no I, O, Z, S, V).
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def resident_id_check_digit(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def check_resident_id(value: str) -> str | None:
    """GB 11643-1999 citizen identity number (18 characters, ISO 7064 MOD 11-2 check digit)."""
    v = value.strip().upper()
    if len(v) != 18:
        return f"a resident ID number has 18 characters, this one has {len(v)}"
    if not re.fullmatch(r"\d{17}[\dX]", v):
        return "a resident ID number is 17 digits followed by a digit or X"
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return f"the birth date {v[6:14]} inside the ID number is not a real date"
    if born.year < 1900:
        return f"the birth date {v[6:14]} inside the ID number is not plausible"
    expected = resident_id_check_digit(v[:17])
    if v[17] != expected:
        return f"wrong check digit: the last character should be {expected}, not {v[17]}"
    return None


def credit_code_check_char(first17: str) -> str:
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def check_credit_code(value: str) -> str | None:
    """GB 32100-2015 unified social credit code (统一社会信用代码)."""
    v = value.strip().upper()
    if len(v) != 18:
        return f"a unified social credit code has 18 characters, this one has {len(v)}"
    bad = sorted({c for c in v if c not in _USCC_ALPHABET})
    if bad:
        return f"a unified social credit code cannot contain {''.join(bad)}"
    expected = credit_code_check_char(v[:17])
    if v[17] != expected:
        return f"wrong check character: the last character should be {expected}, not {v[17]}"
    return None


def normalise_phone(value: str) -> str:
    return re.sub(r"[\s\-()]", "", value.strip()).removeprefix("+86")


def check_phone(value: str) -> str | None:
    """Mainland mobile (1[3-9]x, 11 digits) or landline with area code (0xx-xxxxxxx)."""
    v = normalise_phone(value)
    if re.fullmatch(r"1[3-9]\d{9}", v) or re.fullmatch(r"0\d{2,3}\d{7,8}", v):
        return None
    return "not a mainland phone number: use 11 digits for a mobile (13912345678) or area code + number"


def multiplier(
    *, ct_primary: Decimal, ct_secondary: Decimal, pt_primary: Decimal, pt_secondary: Decimal
) -> Decimal:
    """综合倍率 = CT ratio × PT ratio. CT 200/5 and PT 10000/100 → 40 × 100 = 4000."""
    result = (ct_primary / ct_secondary) * (pt_primary / pt_secondary)
    return result.normalize() if result == result.to_integral_value() else result


def check_capacity(*, usage_category: str, voltage_level: str, capacity_kva: Decimal) -> str | None:
    if capacity_kva <= 0:
        return "capacity must be greater than 0"
    if voltage_level in {"220V", "380V"} and capacity_kva > Decimal(500):
        return "a low-voltage connection above 500 kVA is not possible; choose 10 kV or higher"
    return None


def mask_id_number(value: str) -> str:
    v = value.strip()
    if len(v) <= 8:
        return "*" * len(v)
    return v[:4] + "*" * (len(v) - 8) + v[-4:]


def mask_phone(value: str) -> str:
    v = normalise_phone(value)
    if len(v) < 7:
        return "*" * len(v)
    return v[:3] + "*" * (len(v) - 7) + v[-4:]
