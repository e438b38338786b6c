"""Pure billing rules: audit rules (DOMAIN §4.2), period splits for mid-period changes (§1),
定比定量 and nested-meter energy (§1), due dates (§4.3) and correction differences (§4.4).

No ORM, no clock: every date comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

import numpy as np

from mmis.common.periods import Period

ZERO = Decimal(0)
Q4 = Decimal("0.0001")

# --- audit rules (DOMAIN §4.2) --------------------------------------------------------------------
# code → (default params, weight in the risk score, Chinese label)
DEFAULT_AUDIT_RULES: dict[str, dict] = {
    "change_last_month": {"residential_pct": "50", "other_pct": "30"},
    "change_last_year": {"residential_pct": "50", "other_pct": "30"},
    "zero_bill": {},
    "negative": {},
    "large_bill": {
        "residential": "2000",
        "general_ci": "200000",
        "large_industry": "2000000",
        "agricultural": "50000",
    },
    "tariff_change": {},
    "new_customer": {},
    "estimated": {},
    "low_pf": {"below": "0.70"},
    "demand_over": {"ratio": "1.05"},
    "basic_no_energy": {},
}
RULE_WEIGHTS = {
    "negative": 50,
    "large_bill": 40,
    "change_last_month": 30,
    "change_last_year": 20,
    "zero_bill": 30,
    "tariff_change": 15,
    "estimated": 25,
    "new_customer": 10,
    "low_pf": 15,
    "demand_over": 15,
    "basic_no_energy": 20,
}
RULE_LABELS = {
    "change_last_month": "电费环比变化超限",
    "change_last_year": "电费同比变化超限",
    "zero_bill": "零电费",
    "negative": "负电费",
    "large_bill": "大额电费",
    "tariff_change": "电价/档案本期变更",
    "new_customer": "新装首次计费",
    "estimated": "估抄电量",
    "low_pf": "功率因数低于0.70",
    "demand_over": "最大需量超合同1.05倍",
    "basic_no_energy": "连续两月有基本电费无电量",
}


# the parameters an org may set per rule: name → kind (pct: a change in percent, amount: yuan,
# pf: a power factor, ratio: a multiple of the contract demand)
RULE_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "change_last_month": (("residential_pct", "pct"), ("other_pct", "pct")),
    "change_last_year": (("residential_pct", "pct"), ("other_pct", "pct")),
    "large_bill": (
        ("residential", "amount"),
        ("general_ci", "amount"),
        ("large_industry", "amount"),
        ("agricultural", "amount"),
    ),
    "zero_bill": (),
    "negative": (),
    "tariff_change": (),
    "new_customer": (),
    "estimated": (),
    "low_pf": (("below", "pf"),),
    "demand_over": (("ratio", "ratio"),),
    "basic_no_energy": (),
}
PARAM_LIMITS = {  # kind → (lowest, highest, decimals)
    "pct": (Decimal(0), Decimal(1000), 2),
    "amount": (Decimal(0), Decimal(10) ** 10, 2),
    "pf": (Decimal(0), Decimal(1), 2),
    "ratio": (Decimal(1), Decimal(10), 2),
}


@dataclass(frozen=True, slots=True)
class SettingError:
    """What is wrong with one parameter: `problem` is required | number | decimals | range."""

    path: str  # code.param
    problem: str
    kind: str = ""


def clean_rule_setting(
    code: str, enabled: bool, params: dict[str, object]
) -> tuple[dict, list[SettingError]]:
    """An org's setting of one audit rule, checked: (clean params as text, errors). Every parameter
    of the rule is required while the rule is on (a rule switched off may keep blanks)."""
    if code not in RULE_PARAMS:
        return {}, [SettingError(code, "unknown")]
    errors: list[SettingError] = []
    out: dict[str, str] = {}
    for name, kind in RULE_PARAMS[code]:
        raw = params.get(name)
        text = "" if raw is None else str(raw).strip()
        path = f"{code}.{name}"
        if not text:
            if enabled:
                errors.append(SettingError(path, "required", kind))
            continue
        lo, hi, places = PARAM_LIMITS[kind]
        try:
            value = Decimal(text)
            if not value.is_finite():
                raise ArithmeticError
        except ArithmeticError:
            errors.append(SettingError(path, "number", kind))
            continue
        if value != value.quantize(Decimal(1).scaleb(-places)):
            errors.append(SettingError(path, "decimals", kind))
        elif not lo <= value <= hi:
            errors.append(SettingError(path, "range", kind))
        else:
            out[name] = format(value.normalize(), "f")
    return out, errors


@dataclass(frozen=True, slots=True)
class BillFacts:
    """What the audit rules look at, in fen (money) and 1/10,000 (energy, demand)."""

    usage_category: str
    amount_fen: int
    energy_e4: int
    last_amount_fen: int | None = None  # previous month's bill, None if none
    last_year_amount_fen: int | None = None
    last_energy_e4: int | None = None
    estimated: bool = False
    changed_in_period: bool = False  # tariff version, multiplier, capacity or category changed
    first_bill: bool = False
    negative_line: bool = False
    pf_hundredths: int | None = None
    max_demand_e4: int | None = None
    contract_demand_e4: int | None = None
    basic_fen: int = 0


@dataclass(frozen=True, slots=True)
class Flag:
    code: str
    message: str
    weight: int


def effective_rules(overrides: dict[str, dict] | None = None) -> dict[str, dict | None]:
    """Defaults with an org's settings on top; a disabled rule maps to None."""
    out: dict[str, dict | None] = {k: dict(v) for k, v in DEFAULT_AUDIT_RULES.items()}
    for code, setting in (overrides or {}).items():
        if setting is None or not setting.get("enabled", True):
            out[code] = None
        else:
            base = dict(DEFAULT_AUDIT_RULES.get(code, {}))
            base.update(setting.get("params", {}))
            out[code] = base
    return out


def _pct_change_exceeds(amount: int, ref: int, pct: Decimal) -> Decimal | None:
    """The change in percent when |amount − ref| > pct % of |ref| (ref ≠ 0), else None."""
    if ref == 0:
        return None
    change = Decimal(amount - ref) * 100 / abs(Decimal(ref))
    return change if abs(change) > pct else None


def _yuan(fen: int) -> str:
    return f"{Decimal(fen).scaleb(-2):.2f}"


def audit_bill(facts: BillFacts, rules: dict[str, dict | None]) -> list[Flag]:
    """The flags a bill raises under `rules` (from `effective_rules`)."""
    flags: list[Flag] = []
    residential = facts.usage_category == "residential"

    def add(code: str, message: str) -> None:
        flags.append(Flag(code, message, RULE_WEIGHTS.get(code, 10)))

    for code, ref, what in (
        ("change_last_month", facts.last_amount_fen, "上月"),
        ("change_last_year", facts.last_year_amount_fen, "去年同期"),
    ):
        params = rules.get(code)
        if params is None or ref is None:
            continue
        pct = Decimal(str(params["residential_pct" if residential else "other_pct"]))
        change = _pct_change_exceeds(facts.amount_fen, ref, pct)
        if change is not None:
            add(code, f"较{what} {_yuan(ref)} 元变化 {change:+.1f}%(阈值 ±{pct}%)")
    if rules.get("zero_bill") is not None and facts.amount_fen == 0:
        add("zero_bill", "运行计量点电费为零")
    if rules.get("negative") is not None and (facts.amount_fen < 0 or facts.negative_line):
        add("negative", "账单或明细为负")
    large = rules.get("large_bill")
    if large is not None and facts.usage_category in large:
        limit = Decimal(str(large[facts.usage_category])) * 100
        if facts.amount_fen > limit:
            add("large_bill", f"电费超过 {large[facts.usage_category]} 元")
    if rules.get("tariff_change") is not None and facts.changed_in_period:
        add("tariff_change", "本期电价、倍率、容量或类别有变更,分段计费")
    if rules.get("new_customer") is not None and facts.first_bill:
        add("new_customer", "首次计费")
    if rules.get("estimated") is not None and facts.estimated:
        add("estimated", "本期为估抄电量")
    low = rules.get("low_pf")
    if low is not None and facts.pf_hundredths is not None:
        below = int(Decimal(str(low["below"])) * 100)
        if facts.pf_hundredths < below:
            add("low_pf", f"功率因数 {facts.pf_hundredths / 100:.2f} 低于 {low['below']}")
    over = rules.get("demand_over")
    if over is not None and facts.max_demand_e4 is not None and facts.contract_demand_e4:
        ratio = Decimal(str(over["ratio"]))
        if Decimal(facts.max_demand_e4) > ratio * facts.contract_demand_e4:
            add("demand_over", f"最大需量超过合同需量的 {ratio} 倍")
    if (
        rules.get("basic_no_energy") is not None
        and facts.basic_fen > 0
        and facts.energy_e4 == 0
        and facts.last_energy_e4 == 0
    ):
        add("basic_no_energy", "连续两月有基本电费而无电量(疑似未办暂停)")
    return flags


def risk_score(flags: Sequence[Flag], amount_fen: int) -> int:
    """Sort key of the audit queue: rule weights, plus a little for the size of the bill."""
    if not flags:
        return 0
    size = min(20, max(0, len(str(abs(amount_fen))) - 4) * 4)  # ≥ 100 元 starts to count
    return min(32767, sum(f.weight for f in flags) + size)


# --- the same rules over many bills at once (a billing run's partition) ---------------------------
RULE_ORDER = (
    "change_last_month",
    "change_last_year",
    "zero_bill",
    "negative",
    "large_bill",
    "tariff_change",
    "new_customer",
    "estimated",
    "low_pf",
    "demand_over",
    "basic_no_energy",
)  # the order in which `audit_bill` raises its flags
NONE = -(2**62)  # "no value" in the integer columns below


@dataclass
class FactColumns:
    """`BillFacts` of n bills as NumPy columns (int64; `NONE` where a fact is None)."""

    usage_category: Sequence[str]
    amount_fen: np.ndarray
    energy_e4: np.ndarray
    last_amount_fen: np.ndarray
    last_year_amount_fen: np.ndarray
    last_energy_e4: np.ndarray
    estimated: np.ndarray  # bool
    changed_in_period: np.ndarray  # bool
    first_bill: np.ndarray  # bool
    negative_line: np.ndarray  # bool
    pf_hundredths: np.ndarray
    max_demand_e4: np.ndarray
    contract_demand_e4: np.ndarray  # NONE or 0: no contract demand
    basic_fen: np.ndarray

    def take(self, idx: np.ndarray) -> FactColumns:
        """The facts of the bills at positions `idx`."""
        cats = self.usage_category
        return FactColumns(
            [cats[i] for i in idx.tolist()],
            *(getattr(self, f)[idx] for f in self.__dataclass_fields__ if f != "usage_category"),
        )


@dataclass
class RuleHits:
    """One rule's flags over the columns: which bills, and each flagged bill's message."""

    code: str
    weight: int
    mask: np.ndarray
    message: Callable[[int], str]


def _ratio(value: Decimal) -> tuple[int, int]:
    """value = num / den exactly."""
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    num = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    return (num * 10**exp, 1) if exp >= 0 else (num, 10 ** (-exp))


def _gt_scaled(x: np.ndarray, den: int, num: int, y: np.ndarray) -> np.ndarray:
    """x · den > num · y, exactly (Python integers where int64 could overflow)."""
    bound = max(int(np.abs(x).max(initial=0)) * den, abs(num) * int(np.abs(y).max(initial=0)))
    if bound < 2**62:
        return x * den > num * y
    xo, yo = x.astype(object), y.astype(object)
    return np.asarray(xo * den > yo * num, dtype=bool)


def audit_columns(f: FactColumns, rules: dict[str, dict | None]) -> list[RuleHits]:
    """`audit_bill` over many bills: per rule in `RULE_ORDER`, the bills it flags (vectorised)
    and their messages, equal to the scalar rules bill by bill."""
    n = len(f.amount_fen)
    amount = f.amount_fen
    residential = np.fromiter((c == "residential" for c in f.usage_category), bool, n)
    out: list[RuleHits] = []

    def add(code: str, mask: np.ndarray, message: Callable[[int], str]) -> None:
        if mask.any():
            out.append(RuleHits(code, RULE_WEIGHTS.get(code, 10), mask, message))

    for code, ref, what in (
        ("change_last_month", f.last_amount_fen, "上月"),
        ("change_last_year", f.last_year_amount_fen, "去年同期"),
    ):
        params = rules.get(code)
        if params is None:
            continue
        pcts = {True: Decimal(str(params["residential_pct"])), False: Decimal(str(params["other_pct"]))}
        has = (ref != NONE) & (ref != 0)
        diff = np.abs(amount - np.where(has, ref, 0)) * 100
        mask = np.zeros(n, bool)
        for res, pct in pcts.items():
            num, den = _ratio(pct)
            sel = has & (residential == res)
            if sel.any():
                mask |= sel & _gt_scaled(diff, den, num, np.abs(np.where(sel, ref, 0)))

        def change_message(i: int, ref=ref, what=what, pcts=pcts) -> str:
            r, pct = int(ref[i]), pcts[bool(residential[i])]
            change = Decimal(int(amount[i]) - r) * 100 / abs(Decimal(r))
            return f"较{what} {_yuan(r)} 元变化 {change:+.1f}%(阈值 ±{pct}%)"

        add(code, mask, change_message)
    if rules.get("zero_bill") is not None:
        add("zero_bill", amount == 0, lambda i: "运行计量点电费为零")
    if rules.get("negative") is not None:
        add("negative", (amount < 0) | f.negative_line, lambda i: "账单或明细为负")
    large = rules.get("large_bill")
    if large is not None:
        mask = np.zeros(n, bool)
        for category, limit in large.items():
            floor = int((Decimal(str(limit)) * 100).to_integral_value(rounding=ROUND_FLOOR))
            sel = np.fromiter((c == category for c in f.usage_category), bool, n)
            mask |= sel & (amount > floor)
        add("large_bill", mask, lambda i: f"电费超过 {large[f.usage_category[i]]} 元")
    if rules.get("tariff_change") is not None:
        add(
            "tariff_change", f.changed_in_period.copy(), lambda i: "本期电价、倍率、容量或类别有变更,分段计费"
        )
    if rules.get("new_customer") is not None:
        add("new_customer", f.first_bill.copy(), lambda i: "首次计费")
    if rules.get("estimated") is not None:
        add("estimated", f.estimated.copy(), lambda i: "本期为估抄电量")
    low = rules.get("low_pf")
    if low is not None:
        below = int(Decimal(str(low["below"])) * 100)
        pf = f.pf_hundredths
        add(
            "low_pf",
            (pf != NONE) & (pf < below),
            lambda i: f"功率因数 {int(pf[i]) / 100:.2f} 低于 {low['below']}",
        )
    over = rules.get("demand_over")
    if over is not None:
        ratio = Decimal(str(over["ratio"]))
        num, den = _ratio(ratio)
        md, cd = f.max_demand_e4, f.contract_demand_e4
        has = (md != NONE) & (cd != NONE) & (cd != 0)
        mask = has & _gt_scaled(np.where(has, md, 0), den, num, np.where(has, cd, 0))
        add("demand_over", mask, lambda i: f"最大需量超过合同需量的 {ratio} 倍")
    if rules.get("basic_no_energy") is not None:
        mask = (f.basic_fen > 0) & (f.energy_e4 == 0) & (f.last_energy_e4 == 0)
        add("basic_no_energy", mask, lambda i: "连续两月有基本电费而无电量(疑似未办暂停)")
    return out


def risk_scores(hits: Sequence[RuleHits], amount_fen: np.ndarray) -> np.ndarray:
    """`risk_score` of every bill from its rule hits (0 for a bill without flags)."""
    n = len(amount_fen)
    weight = np.zeros(n, np.int64)
    for h in hits:
        weight += np.where(h.mask, h.weight, 0)
    a = np.abs(amount_fen)
    digits = np.ones(n, np.int64)
    for k in range(1, 19):
        digits += a >= 10**k
    size = np.minimum(20, np.maximum(0, digits - 4) * 4)
    any_flag = np.zeros(n, bool)
    for h in hits:
        any_flag |= h.mask
    return np.where(any_flag, np.minimum(32767, weight + size), 0)


# --- mid-period changes (DOMAIN §1) ---------------------------------------------------------------
def split_period(period: Period, change_days: Iterable[date]) -> list[Period]:
    """`period` cut at each change day strictly inside it, in order."""
    cuts = sorted({d for d in change_days if period.start < d < period.end})
    out, start = [], period.start
    for d in cuts:
        out.append(Period(start, d))
        start = d
    out.append(Period(start, period.end))
    return out


def split_pro_rata(total: Decimal, segments: Sequence[Period]) -> list[Decimal]:
    """Energy split by days, each part half-up to 0.0001, the residue on the last segment so
    the parts sum to the total exactly (`price_change_split = pro_rata_days`)."""
    days = sum(s.days for s in segments)
    if len(segments) == 1 or days == 0:
        return [total] + [ZERO] * (len(segments) - 1)
    parts = [(total * s.days / days).quantize(Q4, rounding=ROUND_HALF_UP) for s in segments[:-1]]
    parts.append(total - sum(parts, ZERO))
    return parts


def split_mixed_use(*, kwh: Decimal, fixed_kwh: Decimal = ZERO, ratio: Decimal = ZERO) -> tuple:
    """定比定量: (fixed part, ratio part, main-tariff rest). Fixed first (capped at the total),
    then the ratio of the remainder (half-up to 0.0001).

    10,000 kWh, 500 fixed, 20 % → (500, 1,900, 7,600).
    """
    fixed = min(fixed_kwh, kwh)
    rest = kwh - fixed
    by_ratio = (rest * ratio).quantize(Q4, rounding=ROUND_HALF_UP)
    return fixed, by_ratio, rest - by_ratio


class NegativeMainEnergy(ValueError):
    """Main meter energy below the sum of its sub-meters: a reading exception, never a credit."""


def main_meter_energy(*, main_kwh: Decimal, sub_kwh: Iterable[Decimal]) -> Decimal:
    """Nested meters (套表): main − Σ sub (each sub already × its own multiplier)."""
    net = main_kwh - sum(sub_kwh, ZERO)
    if net < 0:
        raise NegativeMainEnergy(f"main meter {main_kwh} kWh is below its sub-meters' {main_kwh - net} kWh")
    return net


# --- issue and numbering --------------------------------------------------------------------------
def due_date(*, issued_on: date, payment_term_days: int) -> date:
    return issued_on + timedelta(days=payment_term_days)


def bill_number(*, period_start: date, point_id: int) -> str:
    """Deterministic: a rerun of the same month gives the same point the same number."""
    return f"B{period_start:%Y%m}{point_id:010d}"


# --- corrections (DOMAIN §4.4) -------------------------------------------------------------------
def correction_lines(
    original: Sequence[tuple[str, Decimal, Decimal]], corrected: Sequence[tuple[str, Decimal, Decimal]]
) -> list[tuple[str, Decimal, Decimal]]:
    """Line-by-line difference (code, quantity, amount) of two ratings of the same period.

    Both bills are whole re-ratings, so the difference is never a repricing of the delta.
    """
    out: dict[str, list[Decimal]] = {}
    order: list[str] = []
    for sign, lines in ((-1, original), (1, corrected)):
        for code, q, a in lines:
            if code not in out:
                out[code] = [ZERO, ZERO]
                order.append(code)
            out[code][0] += sign * q
            out[code][1] += sign * a
    return [(c, out[c][0], out[c][1]) for c in order if out[c][0] != 0 or out[c][1] != 0]
