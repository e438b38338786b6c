"""Reading validation (VEE, DOMAIN.md §2.3) and estimates (§2.4): pure functions on plain values.

No ORM, no clock, no I/O. The services load the inputs (previous billable reading, the point's
billed history, thresholds inherited down the org tree) and store the findings as exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from mmis.common.errors import InvalidInput
from mmis.rating.energy import EnergyResult, billed_energy, estimate_kwh

REGISTERS = ("total", "sharp", "peak", "flat", "valley")
TOU_REGISTERS = ("sharp", "peak", "flat", "valley")
FAULT_FLAGS = {
    "voltage_loss": "失压",
    "phase_failure": "断相",
    "reverse_current": "电流反向",
    "cover_opened": "开盖",
    "clock_error": "时钟异常",
    "no_access": "无法抄表",
    "meter_fault": "表计故障",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Configurable per org (inherited down the tree); the defaults are DOMAIN.md §2.3–2.4's."""

    jump_factor: Decimal = Decimal(2)
    zero_use_periods: int = 3
    imbalance_units: Decimal = Decimal(1)
    rollover_max_factor: Decimal = Decimal(3)
    max_consecutive_estimates: int = 2
    missing_grace_days: int = 1
    demand_capacity_factor: Decimal = Decimal("1.0")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def merged(self, overrides: Mapping[str, Any]) -> Thresholds:
        """These thresholds with every non-None value of `overrides` applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None and k in self.names()})


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str  # ReadingException.Rule value
    detail: str


@dataclass(frozen=True, slots=True)
class RegisterEnergy:
    """Energy of one register between two readings."""

    delta: Decimal
    rollover: bool
    kwh: Decimal


@dataclass(slots=True)
class Validation:
    findings: list[Finding] = field(default_factory=list)
    energy: dict[str, RegisterEnergy] = field(default_factory=dict)  # per register (total, TOU, reactive)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def kwh(self) -> Decimal | None:
        e = self.energy.get("total")
        return e.kwh if e else None


def register_energy(
    *, start: Decimal, end: Decimal, multiplier: Decimal, register_digits: int | None
) -> RegisterEnergy:
    """One register's billed energy with the multiplier and rollover rules of mmis.rating.energy."""
    r: EnergyResult = billed_energy(
        start_reading=start, end_reading=end, multiplier=multiplier, register_digits=register_digits
    )
    return RegisterEnergy(r.register_delta, r.rollover, r.kwh)


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f")


def validate(
    *,
    start: Mapping[str, Decimal | None] | None,
    end: Mapping[str, Decimal | None],
    multiplier: Decimal,
    register_digits: int | None,
    register_decimals: int = 2,
    days: int | None = None,
    history_kwh: Sequence[Decimal] = (),
    history_days: int = 0,
    tou: bool = False,
    fault_flags: Sequence[str] = (),
    active: bool = True,
    previous_zero_periods: int = 0,
    max_demand: Decimal | None = None,
    contract_capacity_kva: Decimal | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Validation:
    """Check one reading against the previous billable one (DOMAIN.md §2.3).

    `history_kwh`: billed kWh of the last (up to 3) periods, covering `history_days` days: the
    baseline for zero use, jumps, drops and implausible rollovers. Returns the findings (an empty
    list means valid) and the energy per register.
    """
    out = Validation()
    for flag in fault_flags:
        label = FAULT_FLAGS.get(flag, flag)
        rule = "no_access" if flag == "no_access" else "meter_fault"
        out.findings.append(Finding(rule, f"表计事件/现场情况: {label}"))
    if start is None or start.get("total") is None:
        return out  # the first reading of a meter only opens a period
    baseline_daily = sum(history_kwh, Decimal(0)) / history_days if history_kwh and history_days > 0 else None
    limit_kwh = (
        baseline_daily * (days or history_days / max(len(history_kwh), 1)) * thresholds.rollover_max_factor
        if baseline_daily is not None and baseline_daily > 0
        else None
    )
    names = ["total"] + ([r for r in TOU_REGISTERS if end.get(r) is not None] if tou else [])
    if end.get("reactive") is not None and start.get("reactive") is not None:
        names.append("reactive")
    for name in names:
        s, e = start.get(name), end.get(name)
        if s is None or e is None:
            continue
        label = "总" if name == "total" else name
        if e < s and register_digits is None:
            out.findings.append(Finding("reverse", f"{label}示数倒走: 止码 {_fmt(e)} < 起码 {_fmt(s)}"))
            continue
        try:
            en = register_energy(start=s, end=e, multiplier=multiplier, register_digits=register_digits)
        except InvalidInput as exc:
            out.findings.append(Finding("reverse", f"{label}示数无效: {exc}"))
            continue
        if en.rollover and name == "total":
            if limit_kwh is None:
                out.findings.append(
                    Finding("rollover", f"满码翻转 {_fmt(s)} → {_fmt(e)}, 无历史电量可核对, 需人工确认")
                )
            elif en.kwh > limit_kwh:
                out.findings.append(
                    Finding(
                        "reverse",
                        f"示数倒走: 止码 {_fmt(e)} < 起码 {_fmt(s)}; 按翻转计算 {_fmt(en.kwh)} kWh "
                        f"超过正常用量的 {_fmt(thresholds.rollover_max_factor)} 倍, 不按翻转处理",
                    )
                )
                continue
        out.energy[name] = en
    total = out.energy.get("total")
    if total is not None:
        if total.kwh == 0 and active:
            n = previous_zero_periods + 1
            extra = f", 已连续 {n} 期, 转用电检查" if n >= thresholds.zero_use_periods else ""
            out.findings.append(Finding("zero_use", f"零电量{extra}"))
        elif baseline_daily is not None and baseline_daily > 0 and days:
            daily = total.kwh / days
            k = thresholds.jump_factor
            if daily > k * baseline_daily:
                out.findings.append(
                    Finding(
                        "jump",
                        f"电量突增: 日均 {daily:.2f} kWh, 历史日均 {baseline_daily:.2f} kWh 的 "
                        f"{daily / baseline_daily:.1f} 倍 (阈值 {_fmt(k)})",
                    )
                )
            elif daily * k < baseline_daily:
                out.findings.append(
                    Finding(
                        "drop",
                        f"电量突减: 日均 {daily:.2f} kWh, "
                        f"历史日均 {baseline_daily:.2f} kWh (阈值 1/{_fmt(k)})",
                    )
                )
        if tou:
            rates = [out.energy[r].delta for r in TOU_REGISTERS if r in out.energy]
            if rates:
                unit = Decimal(1).scaleb(-register_decimals)
                tolerance = thresholds.imbalance_units * unit * len(rates)
                diff = abs(total.delta - sum(rates, Decimal(0)))
                if diff > tolerance:
                    out.findings.append(
                        Finding(
                            "tou_imbalance",
                            f"示值不平: 总 {_fmt(total.delta)} ≠ 分时之和 {_fmt(sum(rates, Decimal(0)))} "
                            f"(差 {_fmt(diff)}, 容差 {_fmt(tolerance)})",
                        )
                    )
    if max_demand is not None and contract_capacity_kva:
        demand_kw = max_demand * multiplier
        cap = contract_capacity_kva * thresholds.demand_capacity_factor
        if demand_kw > cap:
            out.findings.append(
                Finding("demand_over", f"最大需量 {_fmt(demand_kw)} kW 超过合同容量 {_fmt(cap)}")
            )
    return out


@dataclass(frozen=True, slots=True)
class Estimate:
    kwh: Decimal  # whole kWh
    registers: dict[str, Decimal | None]


def estimate(
    *,
    start: Mapping[str, Decimal | None],
    history_kwh: Sequence[Decimal],
    history_days: int,
    days: int,
    multiplier: Decimal,
    register_digits: int | None,
    register_decimals: int = 2,
    tou_split: Mapping[str, Decimal] | None = None,
    reactive_ratio: Decimal | None = None,
) -> Estimate:
    """估抄 (DOMAIN.md §2.4): average daily kWh of the history × days, whole kWh half-up; the
    end registers are start + kWh / multiplier (register units, rounded to the register's
    decimals, wrapping at 10^digits). TOU registers follow `tou_split` (shares of the total, the
    last rate takes the remainder so the registers balance). Maximum demand is never estimated."""
    if history_days <= 0 or not history_kwh:
        raise InvalidInput("no billed history to estimate from", "history")
    kwh = estimate_kwh(history_kwh=list(history_kwh), history_days=history_days, days=days)
    q = Decimal(1).scaleb(-register_decimals)

    def advance(value: Decimal, delta: Decimal) -> Decimal:
        out = value + delta
        if register_digits is not None and out >= Decimal(10) ** register_digits:
            out -= Decimal(10) ** register_digits
        return out

    delta_total = (kwh / multiplier).quantize(q, rounding=ROUND_HALF_UP)
    regs: dict[str, Decimal | None] = dict.fromkeys(REGISTERS)
    regs["total"] = advance(start["total"] or Decimal(0), delta_total)
    present = [r for r in TOU_REGISTERS if start.get(r) is not None]
    if tou_split and present:
        remaining = delta_total
        for i, r in enumerate(present):
            if i == len(present) - 1:
                d = remaining
            else:
                d = (delta_total * tou_split.get(r, Decimal(0))).quantize(q, rounding=ROUND_HALF_UP)
                d = min(d, remaining)
                remaining -= d
            regs[r] = advance(start[r] or Decimal(0), d)
    regs["reactive"] = None
    if reactive_ratio is not None and start.get("reactive") is not None:
        regs["reactive"] = advance(
            start["reactive"] or Decimal(0),
            (delta_total * reactive_ratio).quantize(q, rounding=ROUND_HALF_UP),
        )
    return Estimate(kwh=kwh, registers=regs)
