"""The tariff model of spec/rating.md as typed dataclasses, its parser and its JSON form.

This JSON shape (`tariff` in spec/rating.md) is also how the tariff catalog stores a version's
components, so `parse_tariff(t.to_dict()) == t` holds for every valid tariff.

Extensions beyond the spec contract (all optional keys; the contract itself is unchanged):

- `energy.type == "tou"` may carry `"tiers"` (DOMAIN §3.2, TOU on top of tiers): a list of
  `{"up_to": "2760" | null, "increment": "0.05"}` with `"basis"` and `"household_bonus"` as for
  tiered energy. All kWh are priced at the period prices; band *i* ≥ 2 adds a line
  `energy.tier<i>_increment` for its kWh at its increment (an increment of 0 gives no line).
- `"components"` (DOMAIN §3.7, agency purchase and other market components): a list of
  `{"code": "agency_purchase", "price": "0.4012", "floats_with_tou": false, "pf_base": true}`.
  Each gives an energy-type line `component.<code>` (quantity `usage.kwh`) after the energy
  lines. With `floats_with_tou: true` the component carries `"tou_ratios"` (e.g. peak 1.7,
  flat 1, valley 0.38) and gives one line per time-of-use period, `component.<code>.<period>`,
  at price × ratio rounded half-up to 0.0001 (DOMAIN §3.3). `pf_base: true` (the default) puts
  the component's amounts into the power-factor base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mmis.common.errors import join_path
from mmis.common.inputs import MISSING, Reader

TOU_PERIODS: tuple[str, ...] = ("sharp", "peak", "flat", "valley")
PF_STANDARDS: tuple[str, ...] = ("0.90", "0.85", "0.80")
ENERGY_TYPES: tuple[str, ...] = ("flat", "tiered", "tou")
BASIC_TYPES: tuple[str, ...] = ("capacity", "demand_contract", "demand_actual")
TIER_BASES: tuple[str, ...] = ("monthly", "annual")


# --- model -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None  # upper bound of the band in kWh; None for the last band
    price: Decimal


@dataclass(frozen=True, slots=True)
class HouseholdBonus:
    min_persons: int
    tier1_extra: Decimal


@dataclass(frozen=True, slots=True)
class FlatEnergy:
    price: Decimal
    type: str = "flat"


@dataclass(frozen=True, slots=True)
class TieredEnergy:
    basis: str  # "monthly" | "annual"
    tiers: tuple[Tier, ...]
    household_bonus: HouseholdBonus | None = None
    type: str = "tiered"


@dataclass(frozen=True, slots=True)
class TouTier:
    up_to: Decimal | None
    increment: Decimal


@dataclass(frozen=True, slots=True)
class TouEnergy:
    prices: dict[str, Decimal]  # keys among TOU_PERIODS
    tiers: tuple[TouTier, ...] | None = None  # extension: TOU on top of tiers
    basis: str = "monthly"
    household_bonus: HouseholdBonus | None = None
    type: str = "tou"


Energy = FlatEnergy | TieredEnergy | TouEnergy


@dataclass(frozen=True, slots=True)
class CapacityBasic:
    price: Decimal
    kva: Decimal
    type: str = "capacity"


@dataclass(frozen=True, slots=True)
class DemandContractBasic:
    price: Decimal
    contract_kw: Decimal
    type: str = "demand_contract"


@dataclass(frozen=True, slots=True)
class DemandActualBasic:
    price: Decimal
    transformer_kva: Decimal
    type: str = "demand_actual"


Basic = CapacityBasic | DemandContractBasic | DemandActualBasic


@dataclass(frozen=True, slots=True)
class PowerFactorRule:
    standard: str  # "0.90" | "0.85" | "0.80"


@dataclass(frozen=True, slots=True)
class Fund:
    code: str
    price: Decimal


@dataclass(frozen=True, slots=True)
class Component:
    code: str
    price: Decimal
    floats_with_tou: bool = False
    pf_base: bool = True
    tou_ratios: dict[str, Decimal] | None = None


@dataclass(frozen=True, slots=True)
class Tariff:
    energy: Energy
    basic: Basic | None = None
    power_factor: PowerFactorRule | None = None
    funds: tuple[Fund, ...] = ()
    components: tuple[Component, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "energy": _energy_to_dict(self.energy),
            "basic": _basic_to_dict(self.basic),
            "power_factor": {"standard": self.power_factor.standard} if self.power_factor else None,
            "funds": [{"code": f.code, "price": str(f.price)} for f in self.funds],
        }
        if self.components:
            out["components"] = [_component_to_dict(c) for c in self.components]
        return out


@dataclass(frozen=True, slots=True)
class Usage:
    kwh: Decimal
    tou_kwh: dict[str, Decimal] | None = None
    ytd_kwh: Decimal = Decimal(0)
    persons: int | None = None
    kvarh: Decimal | None = None
    max_demand_kw: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RateRequest:
    period: Any  # mmis.common.periods.Period
    tariff: Tariff
    usage: Usage = field(default_factory=lambda: Usage(Decimal(0)))


# --- to_dict helpers -------------------------------------------------------------------------
def _bonus_to_dict(b: HouseholdBonus | None) -> dict[str, Any] | None:
    return None if b is None else {"min_persons": b.min_persons, "tier1_extra": str(b.tier1_extra)}


def _up_to(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _energy_to_dict(e: Energy) -> dict[str, Any]:
    if isinstance(e, FlatEnergy):
        return {"type": "flat", "price": str(e.price)}
    if isinstance(e, TieredEnergy):
        out: dict[str, Any] = {
            "type": "tiered",
            "basis": e.basis,
            "tiers": [{"up_to": _up_to(t.up_to), "price": str(t.price)} for t in e.tiers],
        }
        if e.household_bonus:
            out["household_bonus"] = _bonus_to_dict(e.household_bonus)
        return out
    out = {"type": "tou", "prices": {p: str(e.prices[p]) for p in TOU_PERIODS if p in e.prices}}
    if e.tiers is not None:
        out["basis"] = e.basis
        out["tiers"] = [{"up_to": _up_to(t.up_to), "increment": str(t.increment)} for t in e.tiers]
        if e.household_bonus:
            out["household_bonus"] = _bonus_to_dict(e.household_bonus)
    return out


def _basic_to_dict(b: Basic | None) -> dict[str, Any] | None:
    if b is None:
        return None
    if isinstance(b, CapacityBasic):
        return {"type": "capacity", "price": str(b.price), "kva": str(b.kva)}
    if isinstance(b, DemandContractBasic):
        return {"type": "demand_contract", "price": str(b.price), "contract_kw": str(b.contract_kw)}
    return {"type": "demand_actual", "price": str(b.price), "transformer_kva": str(b.transformer_kva)}


def _component_to_dict(c: Component) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": c.code,
        "price": str(c.price),
        "floats_with_tou": c.floats_with_tou,
        "pf_base": c.pf_base,
    }
    if c.tou_ratios is not None:
        out["tou_ratios"] = {p: str(c.tou_ratios[p]) for p in TOU_PERIODS if p in c.tou_ratios}
    return out


# --- parsing ---------------------------------------------------------------------------------
_ZERO = Decimal(0)


def _code(r: Reader, obj: dict | None, key: str, base: str) -> str | None:
    code = r.string(obj, key, base, max_length=60)
    if code is not None and (not code or not all(ch.isalnum() or ch == "_" for ch in code)):
        r.error(join_path(base, key), "must be a non-empty code of letters, digits and underscores")
        return None
    return code


def _bool(r: Reader, obj: dict | None, key: str, base: str, default: bool) -> bool:
    value = r.get(obj, key)
    if value is MISSING or value is None:
        return default
    if not isinstance(value, bool):
        r.error(join_path(base, key), "must be true or false")
        return default
    return value


def _list(r: Reader, obj: dict | None, key: str, base: str, *, required: bool) -> list | None:
    value = r.get(obj, key)
    path = join_path(base, key)
    if value is MISSING or value is None:
        if required and obj is not None:
            r.error(path, "is required")
        return None
    if not isinstance(value, list):
        r.error(path, "must be a list")
        return None
    return value


def _parse_bounds(r: Reader, items: list, base: str, price_key: str) -> list[tuple[Decimal | None, Decimal]]:
    """Ordered bands `{"up_to", price_key}`; strictly increasing bounds, only the last open."""
    out: list[tuple[Decimal | None, Decimal]] = []
    if not items:
        r.error(base, "must list at least one band")
        return out
    previous: Decimal | None = None
    for i, item in enumerate(items):
        path = f"{base}[{i}]"
        t = r.obj(item, path)
        if t is None:
            continue
        last = i == len(items) - 1
        up_raw = r.get(t, "up_to")
        up: Decimal | None = None
        if up_raw is MISSING:
            r.error(f"{path}.up_to", "is required (null for the last band)")
        elif up_raw is None:
            if not last:
                r.error(f"{path}.up_to", "only the last band may be open (null)")
        else:
            up = r.decimal_value(up_raw, f"{path}.up_to", positive=True)
            if up is not None:
                if last:
                    r.error(f"{path}.up_to", "the last band must be open: up_to null")
                elif previous is not None and up <= previous:
                    r.error(
                        f"{path}.up_to", f"bands must be in increasing order: {up} is not above {previous}"
                    )
                else:
                    previous = up
        price = r.decimal(t, price_key, path, min_value=_ZERO)
        out.append((up, price if price is not None else _ZERO))
    return out


def _parse_bonus(r: Reader, obj: dict | None, base: str) -> HouseholdBonus | None:
    raw = r.get(obj, "household_bonus")
    if raw is MISSING or raw is None:
        return None
    path = join_path(base, "household_bonus")
    b = r.obj(raw, path)
    if b is None:
        return None
    persons = r.integer(b, "min_persons", path, positive=True)
    extra = r.decimal(b, "tier1_extra", path, min_value=_ZERO)
    if persons is None or extra is None:
        return None
    return HouseholdBonus(persons, extra)


def _parse_tou_prices(r: Reader, e: dict, base: str) -> dict[str, Decimal]:
    path = join_path(base, "prices")
    raw = r.obj(r.get(e, "prices"), path)
    prices: dict[str, Decimal] = {}
    if raw is None:
        return prices
    if not raw:
        r.error(path, "must price at least one period (sharp, peak, flat, valley)")
    for key, value in raw.items():
        if key not in TOU_PERIODS:
            r.error(f"{path}.{key}", f"unknown time-of-use period; expected one of: {', '.join(TOU_PERIODS)}")
            continue
        p = r.decimal_value(value, f"{path}.{key}", min_value=_ZERO)
        if p is not None:
            prices[key] = p
    return prices


def _parse_energy(r: Reader, t: dict, base: str) -> Energy | None:
    path = join_path(base, "energy")
    e = r.obj(r.get(t, "energy"), path)
    if e is None:
        return None
    kind = r.choice(e, "type", ENERGY_TYPES, path)
    if kind == "flat":
        price = r.decimal(e, "price", path, min_value=_ZERO)
        return FlatEnergy(price) if price is not None else None
    if kind == "tiered":
        basis = r.choice(e, "basis", TIER_BASES, path)
        items = _list(r, e, "tiers", path, required=True)
        bands = _parse_bounds(r, items, f"{path}.tiers", "price") if items is not None else []
        bonus = _parse_bonus(r, e, path)
        if basis is None or items is None:
            return None
        return TieredEnergy(basis, tuple(Tier(u, p) for u, p in bands), bonus)
    if kind == "tou":
        prices = _parse_tou_prices(r, e, path)
        items = _list(r, e, "tiers", path, required=False)
        if items is None:
            return TouEnergy(prices)
        basis = r.choice(e, "basis", TIER_BASES, path, required=False, default="monthly")
        bands = _parse_bounds(r, items, f"{path}.tiers", "increment")
        bonus = _parse_bonus(r, e, path)
        return TouEnergy(prices, tuple(TouTier(u, p) for u, p in bands), basis or "monthly", bonus)
    return None


def _parse_basic(r: Reader, t: dict, base: str) -> Basic | None:
    path = join_path(base, "basic")
    raw = r.get(t, "basic")
    if raw is MISSING or raw is None:
        return None
    b = r.obj(raw, path)
    if b is None:
        return None
    kind = r.choice(b, "type", BASIC_TYPES, path)
    if kind is None:
        return None
    price = r.decimal(b, "price", path, min_value=_ZERO)
    if kind == "capacity":
        kva = r.decimal(b, "kva", path, min_value=_ZERO)
        return CapacityBasic(price, kva) if price is not None and kva is not None else None
    if kind == "demand_contract":
        kw = r.decimal(b, "contract_kw", path, positive=True)
        return DemandContractBasic(price, kw) if price is not None and kw is not None else None
    kva = r.decimal(b, "transformer_kva", path, min_value=_ZERO)
    return DemandActualBasic(price, kva) if price is not None and kva is not None else None


def _parse_pf(r: Reader, t: dict, base: str) -> PowerFactorRule | None:
    path = join_path(base, "power_factor")
    raw = r.get(t, "power_factor")
    if raw is MISSING or raw is None:
        return None
    pf = r.obj(raw, path)
    if pf is None:
        return None
    std = r.choice(pf, "standard", PF_STANDARDS, path)
    return PowerFactorRule(std) if std is not None else None


def _parse_funds(r: Reader, t: dict, base: str) -> tuple[Fund, ...]:
    path = join_path(base, "funds")
    items = _list(r, t, "funds", base, required=False) or []
    out: list[Fund] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        fpath = f"{path}[{i}]"
        f = r.obj(item, fpath)
        if f is None:
            continue
        code = _code(r, f, "code", fpath)
        price = r.decimal(f, "price", fpath, min_value=_ZERO)
        if code is not None and code in seen:
            r.error(f"{fpath}.code", f"fund {code!r} is listed twice")
            continue
        if code is not None:
            seen.add(code)
        if code is not None and price is not None:
            out.append(Fund(code, price))
    return tuple(out)


def _parse_components(r: Reader, t: dict, base: str, energy: Energy | None) -> tuple[Component, ...]:
    path = join_path(base, "components")
    items = _list(r, t, "components", base, required=False) or []
    out: list[Component] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        cpath = f"{path}[{i}]"
        c = r.obj(item, cpath)
        if c is None:
            continue
        code = _code(r, c, "code", cpath)
        price = r.decimal(c, "price", cpath, min_value=_ZERO)
        floats = _bool(r, c, "floats_with_tou", cpath, False)
        pf_base = _bool(r, c, "pf_base", cpath, True)
        ratios: dict[str, Decimal] | None = None
        raw = r.get(c, "tou_ratios")
        if floats:
            if energy is not None and not isinstance(energy, TouEnergy):
                r.error(f"{cpath}.floats_with_tou", "only a time-of-use energy charge can float a component")
            rr = r.obj(raw, f"{cpath}.tou_ratios")
            if rr is not None:
                ratios = {}
                for key, value in rr.items():
                    if key not in TOU_PERIODS:
                        r.error(f"{cpath}.tou_ratios.{key}", "unknown time-of-use period")
                        continue
                    v = r.decimal_value(value, f"{cpath}.tou_ratios.{key}", min_value=_ZERO)
                    if v is not None:
                        ratios[key] = v
                if isinstance(energy, TouEnergy):
                    for p in energy.prices:
                        if p not in rr:
                            r.error(
                                f"{cpath}.tou_ratios.{p}", "is required: the energy charge prices this period"
                            )
        elif raw is not MISSING and raw is not None:
            r.error(f"{cpath}.tou_ratios", "is only allowed with floats_with_tou: true")
        if code is not None and code in seen:
            r.error(f"{cpath}.code", f"component {code!r} is listed twice")
            continue
        if code is not None:
            seen.add(code)
        if code is not None and price is not None:
            out.append(Component(code, price, floats, pf_base, ratios))
    return tuple(out)


def read_tariff(r: Reader, obj: Any, path: str = "tariff") -> Tariff | None:
    """Read a tariff into `r`, recording every error; None if it is unusable."""
    t = r.obj(obj, path)
    if t is None:
        return None
    energy = _parse_energy(r, t, path)
    basic = _parse_basic(r, t, path)
    pf = _parse_pf(r, t, path)
    funds = _parse_funds(r, t, path)
    components = _parse_components(r, t, path, energy)
    if energy is None:
        return None
    return Tariff(energy, basic, pf, funds, components)


def parse_tariff(obj: Any, path: str = "tariff") -> Tariff:
    """Validate a tariff JSON object (spec/rating.md plus the extensions above); raises InvalidInput."""
    r = Reader()
    tariff = read_tariff(r, obj, path)
    r.raise_if_errors()
    assert tariff is not None
    return tariff


def read_usage(r: Reader, obj: Any, path: str = "usage", tariff: Tariff | None = None) -> Usage | None:
    """Read a usage object; with `tariff`, also check what that tariff needs (kvarh, demand, TOU)."""
    u = r.obj(obj, path)
    if u is None:
        return None
    n_before = len(r.errors)
    kwh = r.decimal(u, "kwh", path, required=False, min_value=_ZERO)
    ytd = r.decimal(u, "ytd_kwh", path, required=False, min_value=_ZERO, default=_ZERO)
    persons = r.integer(u, "persons", path, required=False, min_value=0)
    kvarh = r.decimal(u, "kvarh", path, required=False, min_value=_ZERO)
    demand = r.decimal(u, "max_demand_kw", path, required=False, min_value=_ZERO)
    tou: dict[str, Decimal] | None = None
    tou_path = join_path(path, "tou_kwh")
    raw_tou = r.get(u, "tou_kwh")
    tou_ok = True
    if raw_tou is not MISSING and raw_tou is not None:
        tobj = r.obj(raw_tou, tou_path)
        if tobj is not None:
            tou = {}
            for key, value in tobj.items():
                if key not in TOU_PERIODS:
                    r.error(
                        f"{tou_path}.{key}",
                        f"unknown time-of-use period; expected one of: {', '.join(TOU_PERIODS)}",
                    )
                    tou_ok = False
                    continue
                v = r.decimal_value(value, f"{tou_path}.{key}", min_value=_ZERO)
                if v is None:
                    tou_ok = False
                else:
                    tou[key] = v
        else:
            tou_ok = False
    energy = tariff.energy if tariff is not None else None
    if isinstance(energy, TouEnergy):
        if raw_tou is MISSING or raw_tou is None:
            r.error(tou_path, "is required with a time-of-use energy charge")
            tou_ok = False
        elif tou is not None:
            for key in tou:
                if key not in energy.prices:
                    r.error(f"{tou_path}.{key}", "the tariff has no price for this period")
                    tou_ok = False
    if tou is not None and tou_ok:
        total = sum(tou.values(), _ZERO)
        if kwh is None and r.get(u, "kwh") is MISSING:
            kwh = total
        elif kwh is not None and kwh != total:
            r.error(join_path(path, "kwh"), f"must equal the sum of tou_kwh ({total}), not {kwh}")
    elif kwh is None and r.get(u, "kwh") is MISSING and not isinstance(energy, TouEnergy):
        r.error(join_path(path, "kwh"), "is required")
    if tariff is not None:
        if tariff.power_factor is not None and r.get(u, "kvarh") is MISSING:
            r.error(join_path(path, "kvarh"), "is required with a power-factor standard")
        if isinstance(tariff.basic, DemandContractBasic | DemandActualBasic) and r.get(
            u, "max_demand_kw"
        ) in (
            MISSING,
            None,
        ):
            r.error(join_path(path, "max_demand_kw"), "is required with a demand charge")
    if len(r.errors) > n_before or kwh is None:
        return None
    return Usage(
        kwh=kwh, tou_kwh=tou, ytd_kwh=ytd or _ZERO, persons=persons, kvarh=kvarh, max_demand_kw=demand
    )


def parse_usage(obj: Any, path: str = "usage", *, tariff: Tariff | None = None) -> Usage:
    r = Reader()
    usage = read_usage(r, obj, path, tariff)
    r.raise_if_errors()
    assert usage is not None
    return usage


def parse_rate_request(obj: Any) -> RateRequest:
    """The whole `rate` input (period, tariff, usage), every error found at once."""
    from mmis.common.periods import Period

    r = Reader()
    data = r.obj(obj, "")
    p = r.obj(r.get(data, "period"), "period")
    start = r.date(p, "start", "period")
    end = r.date(p, "end", "period")
    if start is not None and end is not None and end <= start:
        r.error("period.end", f"must be after period.start ({start.isoformat()})")
    tariff = read_tariff(r, r.get(data, "tariff"), "tariff")
    usage = read_usage(r, r.get(data, "usage"), "usage", tariff)
    r.raise_if_errors()
    assert tariff is not None and usage is not None and start is not None and end is not None
    return RateRequest(Period(start, end), tariff, usage)
