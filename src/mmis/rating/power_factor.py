"""Power-factor adjustment (功率因数调整电费, 1983 rules; DOMAIN.md §3.5).

The national tables are *generated* from the rule, not copied:

- Reductions (PF above the standard s), per step of 0.01: std 0.90: 0.15 % per step, capped at
  0.75 %. Std 0.85 and 0.80: 0.10 % per step up to PF 0.90, then 0.15 % per step, capped at
  1.10 % (0.85) or 1.30 % (0.80).
- Surcharges (PF below s): 0.5 % per step for the first 20 steps, 1 % per step for the next 5,
  then 2 % per step without limit.

The power factor itself is kWh / √(kWh² + kvarh²) rounded half-up to two decimals, decided
exactly in integers (never a float or a truncated square root), so an edge such as 0.89976…
always lands on 0.90.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from math import isqrt

STANDARDS: tuple[str, ...] = ("0.90", "0.85", "0.80")
_CAPS_PERCENT = {"0.90": Decimal("0.75"), "0.85": Decimal("1.10"), "0.80": Decimal("1.30")}


def _reduction_percent(standard_steps: int, pf_steps: int, cap: Decimal) -> Decimal:
    """Percent reduction for PF `pf_steps`/100 above standard `standard_steps`/100."""
    if standard_steps == 90:
        pct = Decimal("0.15") * (pf_steps - standard_steps)
    else:
        slow = min(pf_steps, 90) - standard_steps
        fast = max(pf_steps - 90, 0)
        pct = Decimal("0.10") * slow + Decimal("0.15") * fast
    return min(pct, cap)


def _surcharge_percent(steps_below: int) -> Decimal:
    first = min(steps_below, 20)
    second = min(max(steps_below - 20, 0), 5)
    third = max(steps_below - 25, 0)
    return Decimal("0.5") * first + Decimal(1) * second + Decimal(2) * third


def adjustment_rate_for(standard: str, pf_hundredths: int) -> Decimal:
    """The rate as a fraction (−0.0075 for −0.75 %) at PF `pf_hundredths`/100 under `standard`."""
    if standard not in STANDARDS:
        raise ValueError(f"unknown power-factor standard {standard!r}")
    if not 0 <= pf_hundredths <= 100:
        raise ValueError(f"power factor {pf_hundredths}/100 is outside 0.00–1.00")
    s = int(standard[2:])
    if pf_hundredths > s:
        pct = -_reduction_percent(s, pf_hundredths, _CAPS_PERCENT[standard])
    elif pf_hundredths < s:
        pct = _surcharge_percent(s - pf_hundredths)
    else:
        pct = Decimal(0)
    rate = pct / 100
    return Decimal(0) if rate == 0 else rate.normalize()


@cache
def table(standard: str) -> dict[str, Decimal]:
    """The full table for one standard: "1.00" … "0.00" → rate as a fraction."""
    return {f"{k / 100:.2f}": adjustment_rate_for(standard, k) for k in range(100, -1, -1)}


@cache
def _rates_by_hundredths(standard: str) -> tuple[Decimal, ...]:
    return tuple(adjustment_rate_for(standard, k) for k in range(101))


def rate_at(standard: str, pf: Decimal) -> Decimal:
    """Look up a power factor already rounded to two decimals."""
    k = int(pf * 100)
    if Decimal(k) != pf * 100:
        raise ValueError(f"power factor {pf} must be rounded to two decimals before the lookup")
    return _rates_by_hundredths(standard)[k]


def _as_integers(*values: Decimal) -> tuple[int, ...]:
    exp = min(min(v.as_tuple().exponent for v in values), 0)  # type: ignore[type-var]
    return tuple(int(v.scaleb(-exp)) for v in values)


def pf_hundredths_exact(kwh: int, kvarh: int) -> int:
    """Round(kWh / √(kWh² + kvarh²), 2) half-up, as hundredths, for integer (same-scale) inputs.

    PF ≥ (2k − 1)/200 ⇔ 40000·kWh² ≥ (2k − 1)²·(kWh² + kvarh²); the answer is the largest such k.
    """
    if kwh < 0 or kvarh < 0:
        raise ValueError("energy must not be negative")
    if kvarh == 0:
        return 100
    s = kwh * kwh + kvarh * kvarh
    a = 40000 * kwh * kwh
    # (2k-1)^2 <= a/s  ⇔  2k-1 <= isqrt(a // s)   (both sides are integers)
    m = isqrt(a // s)
    k = (m + 1) // 2
    return max(0, min(k, 100))


def power_factor(kwh: Decimal, kvarh: Decimal) -> Decimal:
    """The period's power factor rounded half-up to two decimals (kvarh 0 gives 1.00)."""
    a, b = _as_integers(kwh, kvarh)
    return Decimal(pf_hundredths_exact(a, b)).scaleb(-2)
