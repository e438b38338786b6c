"""Reading validation (VEE, DOMAIN.md §2.3) and estimates (§2.4): pure functions on plain values.

No ORM, no clock, no I/O. The services load the inputs (previous billable reading, the point's
billed history, thresholds inherited down the org tree) and store the findings as exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date
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
    # usage categories whose baseline is the same month last year (季节性用户, e.g. irrigation)
    seasonal_categories: tuple[str, ...] = ("agricultural",)
    exception_days: int = 3  # working days an owner has to decide an exception

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


# --- baseline of the jump/drop rule (DOMAIN.md §2.3) ---------------------------------------------
@dataclass(frozen=True, slots=True)
class Baseline:
    """Normal daily use a period is compared with: the mean of the last 3 billed periods, or for
    a seasonal user the same month last year."""

    daily: Decimal  # kWh per day
    basis: str  # "recent" | "last_year"

    @property
    def label(self) -> str:
        return "去年同期日均" if self.basis == "last_year" else "近3期日均"


def baseline(
    *,
    history_kwh: Sequence[Decimal] = (),
    history_days: int = 0,
    last_year_kwh: Decimal | None = None,
    last_year_days: int = 0,
    seasonal: bool = False,
) -> Baseline | None:
    """DOMAIN.md §2.3: baseline = mean of the last 3 billed months, or the same month last year for
    seasonal users. A seasonal user without a billed period in that month falls back to the recent
    mean; None when there is nothing to compare with.

    Example: 270 + 300 + 330 kWh over 92 days → 9.78 kWh/day (recent); a seasonal user that used
    900 kWh in the 30 days of the same month last year → 30 kWh/day (last year)."""
    if seasonal and last_year_kwh is not None and last_year_days > 0:
        return Baseline(last_year_kwh / last_year_days, "last_year")
    if history_kwh and history_days > 0:
        return Baseline(sum(history_kwh, Decimal(0)) / history_days, "recent")
    return None


# --- metering changes inside a period (换表, new CT/PT; DOMAIN.md §1 mid-period changes, §2.1) ----
@dataclass(frozen=True, slots=True)
class MeteringChange:
    """The point's meter and/or multiplier changed on `day`. `old_final` / `new_initial` are the
    registers read at the change (the same values for a multiplier change on the same meter); None
    when not read. `work_order` is the number of the work order that made it ("" = none) and
    `closed` whether that order is archived."""

    day: date
    old_meter: int | None
    new_meter: int | None
    old_multiplier: Decimal
    new_multiplier: Decimal
    new_register_digits: int | None = None
    old_final: Mapping[str, Decimal | None] | None = None
    new_initial: Mapping[str, Decimal | None] | None = None
    work_order: str = ""
    closed: bool = False

    @property
    def meter_replaced(self) -> bool:
        return self.old_meter != self.new_meter


@dataclass(frozen=True, slots=True)
class TariffChange:
    """The point's tariff code changed on `day` in the customer file (its history). `work_order`
    is the number of the work order that changed it (改类 and the like; "" = none) and `closed`
    whether that order is archived."""

    day: date
    old_code: str
    new_code: str
    work_order: str = ""
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a period read on one meter, from `start` to `end` registers. `parts` are the
    [from, to) dates and the multiplier in force on each: one part, or several when a multiplier
    changed with no register reading at the change (energy then split pro rata by days)."""

    start: Mapping[str, Decimal | None]
    end: Mapping[str, Decimal | None]
    register_digits: int | None
    parts: tuple[tuple[date | None, date | None, Decimal], ...]
    meter: int | None = None

    @property
    def multiplier(self) -> Decimal:
        """The multiplier in force at the end of the segment."""
        return self.parts[-1][2]


def changes_in_period(
    changes: Sequence[MeteringChange],
    *,
    start_date: date,
    end_date: date,
    start_meter: int | None = None,
    end_meter: int | None = None,
) -> list[MeteringChange]:
    """The changes that fall between two readings, oldest first: dated after the start reading and
    up to the end reading. A change on the start reading's day belongs to the period when the start
    reading was taken on the old meter (read, then replaced); a change on the end reading's day does
    not when the end reading is still on the old meter (read, then replaced)."""
    out = []
    for c in sorted(changes, key=lambda c: c.day):
        read_then_replaced = c.meter_replaced and start_meter is not None and start_meter == c.old_meter
        if (c.day == start_date and read_then_replaced) or start_date < c.day < end_date:
            out.append(c)
        elif c.day == end_date and c.day > start_date:
            if c.meter_replaced and end_meter is not None and end_meter == c.old_meter:
                continue
            out.append(c)
    return out


def segments(
    *,
    start: Mapping[str, Decimal | None],
    end: Mapping[str, Decimal | None],
    start_date: date | None,
    end_date: date | None,
    multiplier: Decimal,
    register_digits: int | None,
    changes: Sequence[MeteringChange] = (),
    meter: int | None = None,
) -> list[Segment]:
    """Split a period at its metering changes. `multiplier`, `register_digits` and `meter` are those
    in force at the start reading. A replaced meter needs its final and the new meter's initial
    registers (InvalidInput otherwise); a multiplier change without a register reading splits its
    segment pro rata by days."""
    out: list[Segment] = []
    seg_start, digits, cur_meter = start, register_digits, meter
    parts: list[tuple[date | None, date | None, Decimal]] = []
    part_from, k = start_date, multiplier
    for c in changes:
        if c.old_final is not None and c.new_initial is not None:
            parts.append((part_from, c.day, k))
            out.append(Segment(seg_start, c.old_final, digits, tuple(parts), cur_meter))
            parts = []
            seg_start = c.new_initial
            if c.meter_replaced:
                digits, cur_meter = c.new_register_digits, c.new_meter
        elif c.meter_replaced:
            raise InvalidInput(
                f"the meter was replaced on {c.day} without the old meter's final and the new meter's "
                "initial readings (record them from the work order)",
                "changes",
            )
        else:
            parts.append((part_from, c.day, k))
        part_from, k = c.day, c.new_multiplier
    parts.append((part_from, end_date, k))
    out.append(Segment(seg_start, end, digits, tuple(parts), cur_meter))
    return out


Q4 = Decimal("0.0001")


def split_by_days(delta: Decimal, parts: Sequence[tuple[date | None, date | None, Decimal]]) -> Decimal:
    """kWh of a register delta whose multiplier changed without a reading at the change: the delta
    is shared by days (4 decimals half-up, the last part takes the remainder so the shares add up)
    and each share × its multiplier. 300.00 over 30 days, ×40 for 10 days then ×60 for 20 days →
    100 × 40 + 200 × 60 = 16,000 kWh."""
    return sum(
        (share * k for share, (_, _, k) in zip(day_shares(delta, parts), parts, strict=True)), Decimal(0)
    )


def day_shares(delta: Decimal, parts: Sequence[tuple[date | None, date | None, Decimal]]) -> list[Decimal]:
    """The register delta shared among the parts by their days (see `split_by_days`)."""
    if len(parts) == 1:
        return [delta]
    days = [(b - a).days if a is not None and b is not None else 0 for a, b, _ in parts]
    total = sum(days)
    if total <= 0:
        return [Decimal(0)] * (len(parts) - 1) + [delta]
    out, left = [], delta
    for i, d in enumerate(days):
        share = left if i == len(parts) - 1 else (delta * d / total).quantize(Q4, rounding=ROUND_HALF_UP)
        left -= share
        out.append(share)
    return out


def segment_energy(seg: Segment, name: str) -> RegisterEnergy | None:
    """One register's energy over a segment (None when either side lacks the register); raises
    InvalidInput for a register that went backwards with no known digit count."""
    s, e = seg.start.get(name), seg.end.get(name)
    if s is None or e is None:
        return None
    base = register_energy(start=s, end=e, multiplier=Decimal(1), register_digits=seg.register_digits)
    return RegisterEnergy(base.delta, base.rollover, split_by_days(base.delta, seg.parts))


def period_energy(segs: Sequence[Segment], name: str) -> RegisterEnergy | None:
    """A register's energy over all segments of a period (deltas and kWh added up)."""
    delta, kwh, rollover = Decimal(0), Decimal(0), False
    for seg in segs:
        en = segment_energy(seg, name)
        if en is None:
            return None
        delta += en.delta
        kwh += en.kwh
        rollover = rollover or en.rollover
    return RegisterEnergy(delta, rollover, kwh)


def file_change_findings(
    *,
    start_meter: int | None,
    start_multiplier: Decimal | None,
    end_meter: int | None,
    end_multiplier: Decimal | None,
    changes: Sequence[MeteringChange],
    end_date: date | None = None,
    meter_names: Mapping[int, str] | None = None,
    tariff_changes: Sequence[TariffChange] = (),
) -> list[Finding]:
    """DOMAIN.md §2.3 file change: the meter, multiplier or tariff changed between the start and
    the end reading without a closed work order. Every recorded change must have an archived work
    order, and the recorded changes must lead from the start reading's meter and multiplier to the
    end reading's; what they do not explain was changed in the file alone. A reading taken on the
    day of a change may show the state before or after it. `tariff_changes` are the tariff code
    changes of the period (from the file's history), each needing an archived work order."""
    names = meter_names or {}

    def meter(m: int | None) -> str:
        return names.get(m, str(m)) if m is not None else "—"

    problems = []
    cur_meter, cur_mult = start_meter, start_multiplier
    meters_ok, mults_ok = set(), set()
    for c in sorted(changes, key=lambda c: c.day):
        if end_date is not None and c.day == end_date and not meters_ok:
            meters_ok.add(cur_meter)
            mults_ok.add(cur_mult)
        what = []
        if c.meter_replaced:
            what.append(f"换表 {meter(c.old_meter)} → {meter(c.new_meter)}")
        if c.old_multiplier != c.new_multiplier:
            what.append(f"倍率 {_fmt(c.old_multiplier)} → {_fmt(c.new_multiplier)}")
        text = f"{c.day} {', '.join(what) or '计量装置变更'}"
        if not c.work_order:
            problems.append(f"{text} 无工单")
        elif not c.closed:
            problems.append(f"{text} 工单 {c.work_order} 未归档")
        if c.meter_replaced or cur_meter is None:
            cur_meter = c.new_meter
        cur_mult = c.new_multiplier
    meters_ok.add(cur_meter)
    mults_ok.add(cur_mult)
    if start_meter is not None and end_meter is not None and end_meter not in meters_ok:
        problems.append(f"电能表 {meter(cur_meter)} → {meter(end_meter)} 无换表工单")
    if start_multiplier is not None and end_multiplier is not None and end_multiplier not in mults_ok:
        problems.append(f"综合倍率 {_fmt(cur_mult)} → {_fmt(end_multiplier)} 无变更工单")
    for t in sorted(tariff_changes, key=lambda t: t.day):
        text = f"{t.day} 电价码 {t.old_code or '—'} → {t.new_code or '—'}"
        if not t.work_order:
            problems.append(f"{text} 无工单")
        elif not t.closed:
            problems.append(f"{text} 工单 {t.work_order} 未归档")
    if not problems:
        return []
    return [Finding("file_change", ("档案变更未闭环: " + "; ".join(problems))[:300])]


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
    last_year_kwh: Decimal | None = None,
    last_year_days: int = 0,
    seasonal: bool = False,
    tou: bool = False,
    fault_flags: Sequence[str] = (),
    active: bool = True,
    previous_zero_periods: int = 0,
    max_demand: Decimal | None = None,
    contract_capacity_kva: Decimal | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    segs: Sequence[Segment] | None = None,
) -> Validation:
    """Check one reading against the previous billable one (DOMAIN.md §2.3).

    `history_kwh`: billed kWh of the last (up to 3) periods, covering `history_days` days;
    `last_year_kwh` / `last_year_days`: the billed period of the same month last year. The
    baseline (see `baseline`) serves zero use, jumps, drops and implausible rollovers. `segs`: the
    period split at its meter or multiplier changes (see `segments`); by default one segment from
    `start` to `end` at `multiplier`. Returns the findings (an empty list means valid) and the
    energy per register.
    """
    out = Validation()
    for flag in fault_flags:
        label = FAULT_FLAGS.get(flag, flag)
        rule = "no_access" if flag == "no_access" else "meter_fault"
        out.findings.append(Finding(rule, f"表计事件/现场情况: {label}"))
    if start is None or start.get("total") is None:
        return out  # the first reading of a meter only opens a period
    if not segs:
        segs = [Segment(start, end, register_digits, ((None, None, multiplier),))]
    base = baseline(
        history_kwh=history_kwh,
        history_days=history_days,
        last_year_kwh=last_year_kwh,
        last_year_days=last_year_days,
        seasonal=seasonal,
    )
    baseline_daily = base.daily if base is not None else None
    if days:
        period_days: Decimal | int | float = days
    elif base is not None and base.basis == "last_year":
        period_days = last_year_days
    else:
        period_days = history_days / max(len(history_kwh), 1)
    limit_kwh = (
        baseline_daily * period_days * thresholds.rollover_max_factor
        if baseline_daily is not None and baseline_daily > 0
        else None
    )
    names = ["total"] + ([r for r in TOU_REGISTERS if end.get(r) is not None] if tou else [])
    if end.get("reactive") is not None and start.get("reactive") is not None:
        names.append("reactive")
    for name in names:
        label = "总" if name == "total" else name
        delta, kwh, rollover, usable = Decimal(0), Decimal(0), False, True
        for seg in segs:
            s, e = seg.start.get(name), seg.end.get(name)
            if s is None or e is None:
                usable = False
                break
            if e < s and seg.register_digits is None:
                out.findings.append(Finding("reverse", f"{label}示数倒走: 止码 {_fmt(e)} < 起码 {_fmt(s)}"))
                usable = False
                break
            try:
                en = segment_energy(seg, name)
            except InvalidInput as exc:
                out.findings.append(Finding("reverse", f"{label}示数无效: {exc}"))
                usable = False
                break
            assert en is not None
            delta += en.delta
            kwh += en.kwh
            rollover = rollover or en.rollover
        if not usable:
            continue
        en = RegisterEnergy(delta, rollover, kwh)
        if en.rollover and name == "total":
            s, e = start.get(name), end.get(name)
            assert s is not None and e is not None
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
        elif base is not None and base.daily > 0 and days:
            daily = total.kwh / days
            k = thresholds.jump_factor
            if daily > k * base.daily:
                out.findings.append(
                    Finding(
                        "jump",
                        f"电量突增: 日均 {daily:.2f} kWh, {base.label} {base.daily:.2f} kWh 的 "
                        f"{daily / base.daily:.1f} 倍 (阈值 {_fmt(k)})",
                    )
                )
            elif daily * k < base.daily:
                out.findings.append(
                    Finding(
                        "drop",
                        f"电量突减: 日均 {daily:.2f} kWh, "
                        f"{base.label} {base.daily:.2f} kWh (阈值 1/{_fmt(k)})",
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
        demand_kw = max_demand * segs[-1].multiplier
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
