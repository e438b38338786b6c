"""Billed energy from register readings (spec/energy.md, DOMAIN.md §2.1, §2.4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mmis.common.errors import FieldError, InvalidInput
from mmis.common.inputs import Reader, format_decimal


@dataclass(frozen=True, slots=True)
class EnergyResult:
    register_delta: Decimal
    rollover: bool
    kwh: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "register_delta": format_decimal(self.register_delta),
            "rollover": self.rollover,
            "kwh": format_decimal(self.kwh),
        }


def billed_energy(
    *,
    start_reading: Decimal,
    end_reading: Decimal,
    multiplier: Decimal = Decimal(1),
    register_digits: int | None = None,
) -> EnergyResult:
    """kWh = (end − start) × multiplier, exact; a wrapped register needs its digit count.

    Raises InvalidInput naming the offending field (paths as in spec/energy.md).
    """
    errors: list[FieldError] = []
    if start_reading < 0:
        errors.append(FieldError("start_reading", "must not be negative"))
    if end_reading < 0:
        errors.append(FieldError("end_reading", "must not be negative"))
    if multiplier <= 0:
        errors.append(FieldError("multiplier", "must be greater than 0"))
    if register_digits is not None:
        if register_digits <= 0:
            errors.append(FieldError("register_digits", "must be greater than 0"))
        else:
            limit = Decimal(10) ** register_digits
            for name, value in (("start_reading", start_reading), ("end_reading", end_reading)):
                if value >= limit:
                    errors.append(
                        FieldError(name, f"has more integer digits than the register's {register_digits}")
                    )
    if errors:
        raise InvalidInput(errors)
    rollover = end_reading < start_reading
    if rollover:
        if register_digits is None:
            raise InvalidInput(
                "is below start_reading: give register_digits for a register rollover; otherwise the meter "
                "may have been replaced or reversed and needs a person",
                "end_reading",
            )
        delta = end_reading + Decimal(10) ** register_digits - start_reading
    else:
        delta = end_reading - start_reading
    return EnergyResult(delta, rollover, delta * multiplier)


def billed_energy_from_json(obj: Any) -> EnergyResult:
    r = Reader()
    start = r.decimal(obj, "start_reading")
    end = r.decimal(obj, "end_reading")
    multiplier = r.decimal(obj, "multiplier", required=False, default=Decimal(1))
    digits = r.integer(obj, "register_digits", required=False)
    r.raise_if_errors()
    assert start is not None and end is not None and multiplier is not None
    return billed_energy(start_reading=start, end_reading=end, multiplier=multiplier, register_digits=digits)


def replacement_energy(
    *,
    start_reading: Decimal,
    old_final_reading: Decimal,
    old_multiplier: Decimal,
    new_initial_reading: Decimal,
    end_reading: Decimal,
    new_multiplier: Decimal,
) -> Decimal:
    """Period energy across a meter replacement (换表, DOMAIN §2.1):
    (old final − start) × old multiplier + (end − new initial) × new multiplier."""
    if old_final_reading < start_reading:
        raise InvalidInput("is below the old meter's start reading", "old_final_reading")
    if end_reading < new_initial_reading:
        raise InvalidInput("is below the new meter's initial reading", "end_reading")
    if old_multiplier <= 0 or new_multiplier <= 0:
        raise InvalidInput("multipliers must be greater than 0", "multiplier")
    return (old_final_reading - start_reading) * old_multiplier + (
        end_reading - new_initial_reading
    ) * new_multiplier


def estimate_kwh(*, history_kwh: Sequence[Decimal], history_days: int, days: int) -> Decimal:
    """Estimated reading (估抄, DOMAIN §2.4): mean daily kWh of the history × days, whole kWh half-up.

    270 + 300 + 330 kWh over 92 days, 30 days → 293.48 → 293.
    """
    if history_days <= 0:
        raise ValueError("history_days must be greater than 0")
    if days < 0:
        raise ValueError("days must not be negative")
    total = sum(history_kwh, Decimal(0))
    # exact: total × days / history_days, rounded half-up to whole kWh in integers
    num = total * days
    sign, digits, exp = num.as_tuple()
    n = int("".join(map(str, digits)) or "0")
    assert isinstance(exp, int)
    if exp >= 0:
        a, b = n * 10**exp, history_days
    else:
        a, b = n, history_days * 10 ** (-exp)
    whole = (2 * a + b) // (2 * b)
    return Decimal(-whole if sign else whole).quantize(Decimal(1), rounding=ROUND_HALF_UP)
