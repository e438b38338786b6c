"""Pure rules of the tariff catalog: a version's data (pricing, TOU calendar, basic prices) read and
checked with every error's path, version resolution by date, and the field-by-field comparison.

No ORM, no clock: dates come in as arguments. The pricing part is the rating package's tariff JSON
(`mmis.rating.tariff`), the one storage format of a version's prices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Any

from mmis.common.errors import join_path
from mmis.common.inputs import MISSING, Reader
from mmis.rating.tariff import (
    BASIC_TYPES,
    PF_STANDARDS,
    TOU_PERIODS,
    CapacityBasic,
    DemandActualBasic,
    DemandContractBasic,
    PowerFactorRule,
    Tariff,
    TieredEnergy,
    TouEnergy,
    read_tariff,
)

PERIOD_NAMES: dict[str, str] = {"sharp": "尖峰", "peak": "高峰", "flat": "平段", "valley": "低谷"}

# Fund codes of DOMAIN §3.6 and their Chinese names (codes outside this list are refused).
FUND_NAMES: dict[str, str] = {
    "hydro_project": "国家重大水利工程建设基金",
    "reservoir_resettlement": "大中型水库移民后期扶持资金",
    "small_reservoir": "小型水库移民扶助基金",
    "renewable": "可再生能源电价附加",
    "rural_grid_loan": "农网还贷资金",
}

# Market-era components of DOMAIN §3.7 (free codes are allowed; these get a Chinese name).
COMPONENT_NAMES: dict[str, str] = {
    "agency_purchase": "代理购电价格",
    "line_loss": "上网环节线损费用",
    "transmission": "输配电价",
    "system_operation": "系统运行费用",
    "deviation": "历史偏差电费折价",
}

BASIC_NAMES: dict[str, str] = {
    "capacity": "按容量 (元/kVA·月)",
    "demand_contract": "按合同最大需量 (元/kW·月)",
    "demand_actual": "按实际最大需量 (元/kW·月)",
}

MONTHS = tuple(range(1, 13))


# --- TOU calendar ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HourRange:
    start: int  # hour, 0..23
    end: int  # exclusive, 1..24
    period: str


@dataclass(frozen=True, slots=True)
class Season:
    code: str
    name: str
    months: tuple[int, ...]
    hours: tuple[HourRange, ...]

    def period_at(self, hour: int) -> str:
        for h in self.hours:
            if h.start <= hour < h.end:
                return h.period
        raise ValueError(f"hour {hour} is not covered by season {self.code}")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Calendar:
    """Which TOU period each hour of each month falls in (seasons by month, hour ranges)."""

    seasons: tuple[Season, ...]
    holiday_period: str | None = None  # statutory holidays billed all day at this period, if set

    def season_of(self, month: int) -> Season:
        for s in self.seasons:
            if month in s.months:
                return s
        raise ValueError(f"month {month} is in no season")  # pragma: no cover

    def period_at(self, *, month: int, hour: int, holiday: bool = False) -> str:
        if holiday and self.holiday_period:
            return self.holiday_period
        return self.season_of(month).period_at(hour)

    def periods_used(self) -> set[str]:
        used = {h.period for s in self.seasons for h in s.hours}
        if self.holiday_period:
            used.add(self.holiday_period)
        return used

    def grid(self) -> list[tuple[int, list[str]]]:
        """(hour, [period of each season]) for hours 0..23: the hour × season table of the pages."""
        return [(hour, [s.period_at(hour) for s in self.seasons]) for hour in range(24)]

    def hours_per_period(self, season: Season) -> dict[str, int]:
        out: dict[str, int] = {}
        for h in season.hours:
            out[h.period] = out.get(h.period, 0) + h.end - h.start
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seasons": [
                {
                    "code": s.code,
                    "name": s.name,
                    "months": list(s.months),
                    "hours": [{"from": h.start, "to": h.end, "period": h.period} for h in s.hours],
                }
                for s in self.seasons
            ]
        }
        if self.holiday_period:
            out["holiday_period"] = self.holiday_period
        return out


def _hour(r: Reader, obj: dict, key: str, path: str, lo: int, hi: int) -> int | None:
    n = r.integer(obj, key, path)
    if n is not None and not lo <= n <= hi:
        r.error(join_path(path, key), f"must be an hour from {lo} to {hi}")
        return None
    return n


def read_calendar(r: Reader, obj: Any, path: str = "calendar") -> Calendar | None:
    """Seasons cover each month exactly once; each season's hour ranges cover 0–24 without gaps."""
    c = r.obj(obj, path)
    if c is None:
        return None
    raw_seasons = r.get(c, "seasons")
    spath = join_path(path, "seasons")
    if raw_seasons is MISSING or not isinstance(raw_seasons, list) or not raw_seasons:
        r.error(spath, "must list at least one season")
        return None
    seasons: list[Season] = []
    month_owner: dict[int, int] = {}
    codes: set[str] = set()
    ok = True
    for i, raw in enumerate(raw_seasons):
        p = f"{spath}[{i}]"
        s = r.obj(raw, p)
        if s is None:
            ok = False
            continue
        code = r.string(s, "code", p, max_length=30)
        if code is not None and (not code or code in codes):
            r.error(f"{p}.code", "must be a non-empty code used once")
            ok = False
        if code:
            codes.add(code)
        name = r.string(s, "name", p, required=False, max_length=30) or (code or "")
        months_raw = r.get(s, "months")
        months: list[int] = []
        if not isinstance(months_raw, list) or not months_raw:
            r.error(f"{p}.months", "must list the months (1–12) of the season")
            ok = False
        else:
            for j, m in enumerate(months_raw):
                if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12:
                    r.error(f"{p}.months[{j}]", "must be a month from 1 to 12")
                    ok = False
                elif m in month_owner:
                    r.error(f"{p}.months[{j}]", f"month {m} is already in season {month_owner[m] + 1}")
                    ok = False
                else:
                    month_owner[m] = i
                    months.append(m)
        hours_raw = r.get(s, "hours")
        hours: list[HourRange] = []
        hp = f"{p}.hours"
        if not isinstance(hours_raw, list) or not hours_raw:
            r.error(hp, "must list hour ranges covering 0–24")
            ok = False
        else:
            for j, h_raw in enumerate(hours_raw):
                hpath = f"{hp}[{j}]"
                h = r.obj(h_raw, hpath)
                if h is None:
                    ok = False
                    continue
                start = _hour(r, h, "from", hpath, 0, 23)
                end = _hour(r, h, "to", hpath, 1, 24)
                period = r.choice(h, "period", TOU_PERIODS, hpath)
                if start is None or end is None or period is None:
                    ok = False
                    continue
                if end <= start:
                    r.error(f"{hpath}.to", f"must be after from ({start})")
                    ok = False
                    continue
                hours.append(HourRange(start, end, period))
            if len(hours) == len(hours_raw):
                covered = [0] * 24
                for h in hours:
                    for x in range(h.start, h.end):
                        covered[x] += 1
                twice = [x for x in range(24) if covered[x] > 1]
                missing = [x for x in range(24) if covered[x] == 0]
                if twice:
                    r.error(hp, f"hours {_hour_list(twice)} are in more than one period")
                    ok = False
                if missing:
                    r.error(hp, f"missing TOU periods for hours {_hour_list(missing)}")
                    ok = False
        seasons.append(
            Season(code or "", name, tuple(sorted(months)), tuple(sorted(hours, key=lambda h: h.start)))
        )
    if ok and len(seasons) == len(raw_seasons):
        lacking = [m for m in MONTHS if m not in month_owner]
        if lacking:
            r.error(spath, f"months {', '.join(map(str, lacking))} are in no season")
            ok = False
    holiday = r.choice(c, "holiday_period", TOU_PERIODS, path, required=False)
    if not ok:
        return None
    return Calendar(tuple(seasons), holiday)


def parse_calendar(obj: Any, path: str = "calendar") -> Calendar:
    r = Reader()
    cal = read_calendar(r, obj, path)
    r.raise_if_errors()
    assert cal is not None
    return cal


def _hour_list(hours: list[int]) -> str:
    """[0, 1, 2, 7] → "0–3, 7–8" (half-open ranges, as written in the calendar)."""
    out: list[str] = []
    start = prev = hours[0]
    for h in [*hours[1:], None]:
        if h is not None and h == prev + 1:
            prev = h
            continue
        out.append(f"{start}–{prev + 1}")
        if h is not None:
            start = prev = h
    return ", ".join(out)


# --- a version's data -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VersionData:
    pricing: Tariff
    calendar: Calendar | None
    tier_year_start_month: int
    basic_prices: dict[str, Decimal]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pricing": self.pricing.to_dict(),
            "calendar": self.calendar.to_dict() if self.calendar else None,
            "tier_year_start_month": self.tier_year_start_month,
            "basic_prices": {k: str(self.basic_prices[k]) for k in BASIC_TYPES if k in self.basic_prices},
        }


def read_version_data(r: Reader, data: Any, base: str = "") -> VersionData | None:
    """Pricing (rating tariff JSON) plus the catalog data beside it; cross-checks between them."""
    d = r.obj(data, base or "data")
    if d is None:
        return None
    ppath = join_path(base, "pricing")
    pricing = read_tariff(r, r.get(d, "pricing"), ppath)
    cpath = join_path(base, "calendar")
    raw_cal = r.get(d, "calendar")
    calendar = None if raw_cal is MISSING or raw_cal is None else read_calendar(r, raw_cal, cpath)
    month = r.integer(d, "tier_year_start_month", base, required=False, default=1)
    if month is not None and not 1 <= month <= 12:
        r.error(join_path(base, "tier_year_start_month"), "must be a month from 1 to 12")
    bpath = join_path(base, "basic_prices")
    basic_prices: dict[str, Decimal] = {}
    raw_bp = r.get(d, "basic_prices")
    if raw_bp is not MISSING and raw_bp is not None:
        bp = r.obj(raw_bp, bpath)
        for key, value in (bp or {}).items():
            if key not in BASIC_TYPES:
                r.error(
                    f"{bpath}.{key}", f"unknown basic charge mode; expected one of: {', '.join(BASIC_TYPES)}"
                )
                continue
            v = r.decimal_value(value, f"{bpath}.{key}", min_value=Decimal(0))
            if v is not None:
                basic_prices[key] = v
    if pricing is not None:
        for i, f in enumerate(pricing.funds):
            if f.code not in FUND_NAMES:
                r.error(
                    f"{ppath}.funds[{i}].code",
                    f"unknown fund {f.code!r}; expected one of: {', '.join(FUND_NAMES)}",
                )
        tou_used = isinstance(pricing.energy, TouEnergy) or any(c.floats_with_tou for c in pricing.components)
        if tou_used and raw_cal in (MISSING, None):
            r.error(cpath, "is required: a time-of-use tariff needs its period calendar")
        if isinstance(pricing.energy, TouEnergy) and calendar is not None:
            for p in TOU_PERIODS:
                if p in calendar.periods_used() and p not in pricing.energy.prices:
                    r.error(
                        f"{ppath}.energy.prices.{p}",
                        f"missing TOU period: the calendar uses {p} but the tariff has no price for it",
                    )
    if pricing is None or month is None or not 1 <= month <= 12:
        return None
    if raw_cal not in (MISSING, None) and calendar is None:
        return None
    return VersionData(pricing, calendar, month, basic_prices)


def parse_version_data(data: Any, base: str = "") -> VersionData:
    r = Reader()
    out = read_version_data(r, data, base)
    r.raise_if_errors()
    assert out is not None
    return out


# --- versions by date -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Span:
    key: Any
    effective_from: date


def in_force(spans: Sequence[Span], on: date) -> Span | None:
    """The span with the latest start on or before `on` (a version runs until the next one starts)."""
    best: Span | None = None
    for s in spans:
        if s.effective_from <= on and (best is None or s.effective_from > best.effective_from):
            best = s
    return best


def effective_to(spans: Sequence[Span], span: Span) -> date | None:
    """The derived end (exclusive) of `span`: the start of the next span, None while it is the last."""
    later = [s.effective_from for s in spans if s.effective_from > span.effective_from]
    return min(later) if later else None


def overlap_error(*, published: Sequence[Span], others: Sequence[Span], effective_from: date) -> str | None:
    """Why a new version starting on `effective_from` would overlap the versions already there.

    Published history is fixed: a new version must start after the latest published version
    (otherwise it would cut into a period already in force); no two versions share a start."""
    for s in others:
        if s.effective_from == effective_from:
            return f"overlaps version {s.key} which also starts on {effective_from.isoformat()}"
    latest = max(published, key=lambda s: s.effective_from, default=None)
    if latest is not None and effective_from <= latest.effective_from:
        return (
            f"overlaps published version {latest.key} in force from {latest.effective_from.isoformat()}: "
            "a new version must start after it"
        )
    return None


# --- applying a catalog tariff to one metering point ---------------------------------------------
def tariff_for_point(
    *,
    pricing: Tariff,
    basic_prices: dict[str, Decimal],
    basic_mode: str | None = None,
    capacity_kva: Decimal | None = None,
    contract_demand_kw: Decimal | None = None,
    pf_standard: str | None = None,
) -> Tariff:
    """The catalog price with the point's own quantities: basic charge mode and capacity/demand
    (price from `basic_prices`), and the point's PF standard ("" = not assessed, None = catalog default)."""
    out = pricing
    if basic_mode:
        if basic_mode not in BASIC_TYPES:
            raise ValueError(f"unknown basic charge mode {basic_mode!r}")
        price = basic_prices.get(basic_mode)
        if price is None and out.basic is not None and out.basic.type == basic_mode:
            price = out.basic.price
        if price is None:
            raise ValueError(f"the tariff has no {basic_mode} price")
        kva = capacity_kva or Decimal(0)
        if basic_mode == "capacity":
            basic: Any = CapacityBasic(price, kva)
        elif basic_mode == "demand_contract":
            basic = DemandContractBasic(price, contract_demand_kw or Decimal(1))
        else:
            basic = DemandActualBasic(price, kva)
        out = replace(out, basic=basic)
    elif basic_mode == "":
        out = replace(out, basic=None)
    if pf_standard is not None:
        if pf_standard and pf_standard not in PF_STANDARDS:
            raise ValueError(f"unknown PF standard {pf_standard!r}")
        out = replace(out, power_factor=PowerFactorRule(pf_standard) if pf_standard else None)
    return out


# --- comparing two versions -----------------------------------------------------------------------
def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict/list → {"pricing.energy.tiers[0].price": "0.5469", …}; funds/components keyed by code."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        if not value and prefix:
            out[prefix] = {}
        for k, v in value.items():
            out.update(flatten(v, join_path(prefix, str(k))))
    elif isinstance(value, list):
        keyed = all(isinstance(x, dict) and "code" in x for x in value) and value
        for i, v in enumerate(value):
            if keyed:
                item = {k: x for k, x in v.items() if k != "code"}
                out.update(flatten(item, f"{prefix}[{v['code']}]"))
            else:
                out.update(flatten(v, f"{prefix}[{i}]"))
        if not value:
            out[prefix] = []
    else:
        out[prefix] = value
    return out


@dataclass(frozen=True, slots=True)
class Difference:
    path: str
    left: Any
    right: Any
    change: str  # "changed" | "added" | "removed" | "same"

    @property
    def ratio(self) -> Decimal | None:
        """right / left − 1 for two prices, else None."""
        try:
            a, b = Decimal(str(self.left)), Decimal(str(self.right))
        except Exception:
            return None
        if a == 0 or self.change != "changed":
            return None
        return (b / a - 1).quantize(Decimal("0.0001"))

    @property
    def percent(self) -> str | None:
        """The change of a price in percent, signed ("+3.17%", "-3.39%")."""
        r = self.ratio
        return None if r is None else f"{r * 100:+.2f}%"


def compare(left: dict[str, Any], right: dict[str, Any], *, include_same: bool = False) -> list[Difference]:
    a, b = flatten(left), flatten(right)
    out: list[Difference] = []
    for key in list(a) + [k for k in b if k not in a]:
        if key not in b:
            out.append(Difference(key, a[key], None, "removed"))
        elif key not in a:
            out.append(Difference(key, None, b[key], "added"))
        elif _same(a[key], b[key]):
            if include_same:
                out.append(Difference(key, a[key], b[key], "same"))
        else:
            out.append(Difference(key, a[key], b[key], "changed"))
    return out


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, str) and isinstance(y, str):
        try:
            return Decimal(x) == Decimal(y)
        except Exception:
            return x == y
    return x == y


def derive_tou_prices(*, base: Decimal, ratios: dict[str, Decimal]) -> dict[str, Decimal]:
    """Period prices from a flat (base) price and ratios, rounded half-up to 0.0001 (DOMAIN §3.3)."""
    from decimal import ROUND_HALF_UP

    return {
        p: (base * ratios[p]).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        for p in TOU_PERIODS
        if p in ratios
    }


def is_annual_tiers(pricing: Tariff) -> bool:
    e = pricing.energy
    return (isinstance(e, TieredEnergy) and e.basis == "annual") or (
        isinstance(e, TouEnergy) and e.tiers is not None and e.basis == "annual"
    )
