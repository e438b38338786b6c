"""The calculation of one partition, on plain values (no ORM): inputs → segments → one vectorised
rating pass per tariff group → bills with lines, audit flags and a trace; or an exception.

Scaled integers throughout (energy 1/10,000 kWh, money fen), as `mmis.rating.vector`. The scalar
engine is the reference: `scalar_rate(trace, tariffs)` re-rates a bill from its trace with
`mmis.rating.engine.rate`, and the tests and the benchmark compare the two on the run's bills.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np

from mmis.billing import rules
from mmis.billing.inputs import PointReading, TariffVersion
from mmis.common.periods import Period
from mmis.rating.engine import RatingResult, rate
from mmis.rating.losses import add_loss, transformer_loss_formula, transformer_loss_ratio
from mmis.rating.tariff import (
    TOU_PERIODS,
    CapacityBasic,
    DemandActualBasic,
    DemandContractBasic,
    Tariff,
    TieredEnergy,
    TouEnergy,
    Usage,
)
from mmis.rating.vector import UsageBatch, proration_days_of, rate_batch, to_scaled

Q = 10_000
_I64 = np.int64


@dataclass(frozen=True, slots=True)
class PointFile:
    """The customer-file facts of a metering point that billing needs."""

    id: int
    org_id: int
    customer_id: int
    account_id: int
    usage_category: str
    tariff_code: str
    multiplier: Decimal
    pf_standard: str
    basic_charge_mode: str
    capacity_kva: Decimal
    contract_demand_kw: Decimal | None
    tier_persons: int
    role: str = "main"
    parent_id: int | None = None
    energised_on: date | None = None
    position: str = "boundary"


@dataclass(frozen=True, slots=True)
class History:
    last_amount_fen: int | None = None
    last_energy_e4: int | None = None
    last_year_amount_fen: int | None = None
    has_earlier_bill: bool = True
    ytd_e4: int = 0  # billed kWh earlier in the tier year


@dataclass(slots=True)
class Segment:
    period: Period
    version: TariffVersion
    kwh: int  # e4
    tou: dict[str, int] | None
    kvarh: int
    demand: int
    ytd: int
    chained: bool  # monthly bands shared by the segments of one month


@dataclass(slots=True)
class BillResult:
    point: PointFile
    period: Period
    segments: list[Segment]
    reading: PointReading
    loss_e4: int = 0
    lines: list[tuple[int, str, int, str, int]] = field(default_factory=list)  # seg, code, q e4, price, fen
    total_fen: int = 0
    energy_e4: int = 0
    basic_fen: int = 0
    pf_hundredths: int | None = None
    negative_line: bool = False
    flags: list[rules.Flag] = field(default_factory=list)
    risk: int = 0
    trace: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SetAside:
    point_id: int
    reason: str
    message: str


REASON_TEXT = {
    "no_reading": "本期无可计费抄表示数",
    "no_reading_source": "抄表数据不可用",
    # the readings app's reasons (mmis.readings.queries.BillingReading)
    "missing": "本期无抄表示数",
    "exception": "抄表示数异常, 待抄表审核",
    "pending_validation": "抄表示数待审核",
    "no_start_reading": "无上期示数(首次抄表)",
    "meter_changed": "本期换表, 按换表工单计费",
    "invalid_energy": "示数无法计算电量",
    "no_tariff": "无执行电价",
    "no_tariff_code": "计量点未设置电价码",
    "multiplier_zero": "综合倍率为零",
    "missing_tou": "分时电价缺少分时电量",
    "missing_demand": "需量计费缺少最大需量",
    "inconsistent": "示数不平衡或电量不一致",
    "negative_main_energy": "总表电量小于子表电量之和",
    "bad_input": "输入数据无法计费",
}


def _e4(v: Decimal | None) -> int:
    return 0 if v is None else to_scaled(v)


def _dec4(v: int) -> Decimal:
    return Decimal(v).scaleb(-4)


def fmt4(v: int) -> str:
    if v < 0:
        return "-" + fmt4(-v)
    return f"{v // Q}.{v % Q:04d}"


def fmt2(v: int) -> str:
    if v < 0:
        return "-" + fmt2(-v)
    return f"{v // 100}.{v % 100:02d}"


def _split_int(total: int, segs: list[Period]) -> list[int]:
    """Pro rata by days in 1/10,000 (half-up), residue on the last segment."""
    if len(segs) == 1:
        return [total]
    days = sum(s.days for s in segs)
    parts = [(2 * total * s.days + days) // (2 * days) for s in segs[:-1]]
    parts.append(total - sum(parts))
    return parts


def _loss_e4(point: PointFile, reading: PointReading, period: Period) -> int:
    spec = getattr(reading, "transformer", None)
    if point.position != "hv_supply_lv_metering" or not spec:
        return 0
    kwh = reading.kwh or Decimal(0)
    if spec.get("method") == "ratio":
        loss = transformer_loss_ratio(kwh=kwh, ratio=Decimal(str(spec["ratio"])))
    else:
        loss = transformer_loss_formula(
            kwh=kwh,
            no_load_kw=Decimal(str(spec["no_load_kw"])),
            load_loss_kw=Decimal(str(spec["load_loss_kw"])),
            rated_kva=Decimal(str(spec["rated_kva"])),
            cos_phi=Decimal(str(spec.get("cos_phi", "0.9"))),
            hours=Decimal(period.days * 24),
        )
    return to_scaled(loss)


def effective_tariff(version: TariffVersion, *, basic_mode: str, pf_standard: str, chained: bool) -> Tariff:
    t = version.for_point(basic_mode=basic_mode, pf_standard=pf_standard)
    if chained:
        e = t.energy
        if (isinstance(e, TieredEnergy) and e.basis == "monthly") or (
            isinstance(e, TouEnergy) and e.tiers is not None and e.basis == "monthly"
        ):
            t = replace(t, energy=replace(e, basis="annual"))
    return t


def basic_quantity_e4(point: PointFile, tariff: Tariff) -> int:
    b = tariff.basic
    if isinstance(b, DemandContractBasic):
        return _e4(point.contract_demand_kw or Decimal(0))
    if isinstance(b, CapacityBasic | DemandActualBasic):
        return _e4(point.capacity_kva)
    return 0


def _needs_chain(t: Tariff) -> bool:
    e = t.energy
    return (isinstance(e, TieredEnergy) or (isinstance(e, TouEnergy) and e.tiers is not None)) and (
        e.basis == "monthly"
    )


def _is_annual(t: Tariff) -> bool:
    e = t.energy
    return (isinstance(e, TieredEnergy) or (isinstance(e, TouEnergy) and e.tiers is not None)) and (
        e.basis == "annual"
    )


VersionsAt = Callable[[int, str, Period], list[tuple[Period, TariffVersion]] | None]


def prepare(
    *,
    point: PointFile,
    reading: PointReading,
    month: Period,
    versions_at: VersionsAt,
    history: History,
    sub_kwh: list[PointReading] = (),  # type: ignore[assignment]
) -> BillResult | SetAside:
    """Check one point's inputs and cut its billing period into rated segments."""
    if not reading.billable:
        text = REASON_TEXT.get(reading.reason, reading.reason)
        return SetAside(point.id, reading.reason, f"{text}: {reading.detail}" if reading.detail else text)
    mult = reading.multiplier if reading.multiplier is not None else point.multiplier
    if mult is None or mult == 0:
        return SetAside(point.id, "multiplier_zero", REASON_TEXT["multiplier_zero"])
    if not point.tariff_code:
        return SetAside(point.id, "no_tariff_code", REASON_TEXT["no_tariff_code"])
    start = month.start
    if point.energised_on and month.start < point.energised_on < month.end:
        start = point.energised_on
    period = Period(start, month.end)
    spans = versions_at(point.org_id, point.tariff_code, period)
    if not spans:
        return SetAside(point.id, "no_tariff", f"{REASON_TEXT['no_tariff']}: {point.tariff_code}")
    try:
        kwh = _e4(reading.kwh)
        tou = {p: _e4(v) for p, v in reading.tou_kwh.items()} if reading.tou_kwh else None
        kvarh = _e4(reading.kvarh)
        demand = _e4(reading.max_demand_kw)
        if kwh < 0 or (tou and any(v < 0 for v in tou.values())):
            return SetAside(point.id, "inconsistent", "电量为负")
        first = spans[0][1].tariff
        uses_tou = isinstance(first.energy, TouEnergy) or any(c.floats_with_tou for c in first.components)
        if tou is not None and not uses_tou:
            tou = None  # a TOU meter on a flat or tiered tariff: the total register bills
        if tou is not None and sum(tou.values()) != kwh:
            # the reading audit accepted the register balance (DOMAIN §2.1: one last-digit unit
            # per rate register × multiplier); the periods' energy is what is priced and billed
            if abs(sum(tou.values()) - kwh) > len(tou) * _e4(mult) // 100 + 1:
                message = f"分时电量之和 {fmt4(sum(tou.values()))} ≠ 总电量 {fmt4(kwh)}"
                return SetAside(point.id, "inconsistent", message)
            kwh = sum(tou.values())
        for sub in sub_kwh:  # nested meters: main − Σ sub
            if not sub.billable:
                return SetAside(point.id, "negative_main_energy", f"子表 {sub.point_id} 无可计费示数")
            s = _e4(sub.kwh)
            kwh -= s
            if tou is not None:
                stou = {p: _e4(v) for p, v in (sub.tou_kwh or {"flat": sub.kwh}).items()}
                for p, v in stou.items():
                    tou[p] = tou.get(p, 0) - v
            if kwh < 0 or (tou and any(v < 0 for v in tou.values())):
                return SetAside(point.id, "negative_main_energy", REASON_TEXT["negative_main_energy"])
        loss = _loss_e4(point, reading, period)
        if loss:
            kwh += loss
            if tou is not None:
                shares = add_loss(
                    tou_kwh={p: _dec4(v) for p, v in tou.items()}, loss_kwh=_dec4(loss), places=4
                )
                tou = {p: _e4(v) for p, v in shares.items()}
    except ValueError as exc:
        return SetAside(point.id, "bad_input", str(exc)[:250])
    first_tariff = spans[0][1].tariff
    if isinstance(first_tariff.energy, TouEnergy) and tou is None:
        return SetAside(point.id, "missing_tou", REASON_TEXT["missing_tou"])
    if point.basic_charge_mode in ("demand_contract", "demand_actual") and reading.max_demand_kw is None:
        return SetAside(point.id, "missing_demand", REASON_TEXT["missing_demand"])
    if point.basic_charge_mode == "demand_contract" and not point.contract_demand_kw:
        return SetAside(point.id, "missing_demand", "按合同需量计费但未设置合同需量")
    periods = [p for p, _ in spans]
    kwh_parts = _split_int(kwh, periods)
    kvarh_parts = _split_int(kvarh, periods)
    tou_parts = {p: _split_int(v, periods) for p, v in tou.items()} if tou else None
    chained = len(spans) > 1 and any(_needs_chain(v.tariff) for _, v in spans)
    segments = []
    ytd = history.ytd_e4
    for i, (p, v) in enumerate(spans):
        segments.append(
            Segment(
                period=p,
                version=v,
                kwh=kwh_parts[i],
                tou={k: parts[i] for k, parts in tou_parts.items()} if tou_parts else None,
                kvarh=kvarh_parts[i],
                demand=demand,
                ytd=ytd if (chained or _is_annual(v.tariff)) else 0,
                chained=chained,
            )
        )
        ytd += kwh_parts[i]
    return BillResult(
        point=point, period=period, segments=segments, reading=reading, loss_e4=loss, energy_e4=kwh
    )


def rate_all(bills: list[BillResult]) -> None:
    """One vectorised pass per (tariff version, basic mode, PF standard, chained) group."""
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for bi, b in enumerate(bills):
        for si, s in enumerate(b.segments):
            key = (s.version.version_id, b.point.basic_charge_mode, b.point.pf_standard, s.chained)
            groups.setdefault(key, []).append((bi, si))
    per_bill: list[list[tuple[int, list]]] = [[] for _ in bills]
    for key, members in groups.items():
        first = bills[members[0][0]].segments[members[0][1]]
        tariff = effective_tariff(first.version, basic_mode=key[1], pf_standard=key[2], chained=key[3])
        segs = [bills[bi].segments[si] for bi, si in members]
        n = len(segs)
        tou = None
        if isinstance(tariff.energy, TouEnergy) or any(
            c.floats_with_tou and c.tou_ratios for c in tariff.components
        ):
            tou = {p: np.fromiter(((s.tou or {}).get(p, 0) for s in segs), _I64, n) for p in TOU_PERIODS}
        batch = UsageBatch(
            kwh=np.fromiter((s.kwh for s in segs), _I64, n),
            ytd_kwh=np.fromiter((s.ytd for s in segs), _I64, n),
            persons=np.fromiter((bills[bi].point.tier_persons for bi, _ in members), _I64, n),
            tou_kwh=tou,
            kvarh=np.fromiter((s.kvarh for s in segs), _I64, n),
            max_demand_kw=np.fromiter((s.demand for s in segs), _I64, n),
            proration_days=_days(segs),
            basic_quantity=np.fromiter(
                (basic_quantity_e4(bills[bi].point, tariff) for bi, _ in members), _I64, n
            )
            if tariff.basic is not None
            else None,
        )
        res = rate_batch(tariff, batch)
        q = res.quantities.T.tolist()
        a = res.amounts.T.tolist()
        tot = res.total.tolist()
        pf = res.power_factor.tolist() if res.power_factor is not None else None
        pfr = res.pf_rate_e4.tolist() if res.pf_rate_e4 is not None else None
        prices = [None if p is None else str(p) for p in res.prices]
        codes = res.codes
        for j, (bi, si) in enumerate(members):
            qj, aj = q[j], a[j]
            lines = []
            for r, code in enumerate(codes):
                if qj[r] == 0:
                    continue
                price = prices[r]
                if price is None:
                    price = str(Decimal(pfr[j]).scaleb(-4))  # type: ignore[index]
                lines.append((si, code, qj[r], price, aj[r]))
            per_bill[bi].append((si, lines, tot[j], None if pf is None else pf[j]))
    for bi, b in enumerate(bills):
        parts = sorted(per_bill[bi], key=lambda x: x[0])
        lines: list = []
        total = basic = 0
        neg = False
        pfv = None
        for _si, ls, t, pfh in parts:
            lines.extend(ls)
            total += t
            if pfh is not None:
                pfv = pfh if pfv is None else min(pfv, pfh)
            for line in ls:
                if line[1].startswith("basic."):
                    basic += line[4]
                if line[4] < 0 and line[1] != "pf_adjustment":
                    neg = True
        b.lines, b.total_fen, b.basic_fen, b.negative_line, b.pf_hundredths = lines, total, basic, neg, pfv


def _days(segs: list[Segment]) -> np.ndarray | int:
    days = [proration_days_of(s.period) for s in segs]
    if all(d == 30 for d in days):
        return 30
    return np.array(days, dtype=_I64)


def audit_all(bills: list[BillResult], histories: dict[int, History], rule_set: dict) -> None:
    for b in bills:
        h = histories.get(b.point.id) or History()
        facts = rules.BillFacts(
            usage_category=b.point.usage_category,
            amount_fen=b.total_fen,
            energy_e4=b.energy_e4,
            last_amount_fen=h.last_amount_fen,
            last_year_amount_fen=h.last_year_amount_fen,
            last_energy_e4=h.last_energy_e4,
            estimated=b.reading.estimated,
            changed_in_period=len(b.segments) > 1 or b.reading.multiplier_changed,
            first_bill=not h.has_earlier_bill,
            negative_line=b.negative_line,
            pf_hundredths=b.pf_hundredths,
            max_demand_e4=_e4(b.reading.max_demand_kw) if b.reading.max_demand_kw is not None else None,
            contract_demand_e4=_e4(b.point.contract_demand_kw) if b.point.contract_demand_kw else None,
            basic_fen=b.basic_fen,
        )
        b.flags = rules.audit_bill(facts, rule_set)
        b.risk = rules.risk_score(b.flags, b.total_fen)


def _num(v: Decimal | None) -> str | None:
    """A measured quantity as text with at most 4 decimals (readings multiply to 8)."""
    if v is None:
        return None
    try:
        return fmt4(to_scaled(v))
    except ValueError:
        return f"{v.normalize():f}"


def _regs(regs: dict[str, Any]) -> dict[str, Any]:
    """Registers as text for the trace (readings give Decimals; a date stays ISO text)."""
    return {k: v if v is None or isinstance(v, str | int | bool) else str(v) for k, v in regs.items()}


def build_trace(b: BillResult) -> dict[str, Any]:
    """Everything needed to explain (and re-rate) the bill: readings → energy → tariff → lines."""
    r = b.reading
    segs = []
    for s in b.segments:
        segs.append(
            {
                "start": s.period.start.isoformat(),
                "end": s.period.end.isoformat(),
                "v": s.version.version_id,
                "vl": s.version.label,
                "kwh": fmt4(s.kwh),
                "tou": {p: fmt4(v) for p, v in s.tou.items()} if s.tou else None,
                "kvarh": fmt4(s.kvarh),
                "md": fmt4(s.demand),
                "ytd": fmt4(s.ytd),
                "ch": s.chained,
            }
        )
    return {
        "r": {
            "start": _regs(r.start),
            "end": _regs(r.end),
            "mult": _num(r.multiplier if r.multiplier is not None else b.point.multiplier),
            "kwh": _num(r.kwh),
            "tou": {p: _num(v) for p, v in r.tou_kwh.items()} if r.tou_kwh else None,
            "kvarh": _num(r.kvarh),
            "md": _num(r.max_demand_kw),
            "est": r.estimated,
            "mchg": r.multiplier_changed,  # the multiplier (or meter) changed in the period
        },
        "loss": fmt4(b.loss_e4) if b.loss_e4 else None,
        "p": {
            "bm": b.point.basic_charge_mode,
            "pf": b.point.pf_standard,
            "bq": fmt4(basic_quantity_e4(b.point, b.segments[0].version.tariff)) if b.segments else "0",
            "cap": str(b.point.capacity_kva),
            "cd": None if b.point.contract_demand_kw is None else str(b.point.contract_demand_kw),
            "persons": b.point.tier_persons,
        },
        "seg": segs,
        "pfv": None if b.pf_hundredths is None else f"{b.pf_hundredths / 100:.2f}",
    }


# --- compact trace --------------------------------------------------------------------------------
# A bill stores its trace compactly (`"v": 2`): no null values, no null registers, and no segment
# list when the bill is one segment over its whole period that follows from the bill's own fields
# (period, tariff version, energy) and the readings part. `expand_trace` gives back exactly what
# `build_trace` built; a trace without "v" (written before) is already expanded.
TRACE_VERSION = 2
REGISTER_NAMES = ("total", "sharp", "peak", "flat", "valley", "reactive")
_R_KEYS = ("start", "end", "mult", "kwh", "tou", "kvarh", "md", "est", "mchg")
_P_KEYS = ("bm", "pf", "bq", "cap", "cd", "persons")


def _compact_regs(regs: Any) -> Any:
    """The six registers of a reading without the empty ones; anything else kept as it is."""
    if not regs:
        return None
    if isinstance(regs, dict) and set(regs) == set(REGISTER_NAMES):
        return {k: v for k, v in regs.items() if v is not None}
    return {"=": regs}


def _expand_regs(regs: Any) -> Any:
    if regs is None:
        return {}
    if "=" in regs:
        return regs["="]
    return {k: regs.get(k) for k in REGISTER_NAMES}


def default_segment(
    t: dict, *, period_start: date, period_end: date, version_id: int, energy_e4: int
) -> dict[str, Any]:
    """The one segment a compact trace leaves out: the bill's whole period at its tariff version."""
    r = t.get("r", {})
    return {
        "start": period_start.isoformat(),
        "end": period_end.isoformat(),
        "v": version_id,
        "vl": t.get("vl", ""),
        "kwh": fmt4(energy_e4),
        "tou": r.get("tou") if t.get("st") else None,
        "kvarh": r.get("kvarh") or "0.0000",
        "md": r.get("md") or "0.0000",
        "ytd": t.get("ytd", "0.0000"),
        "ch": False,
    }


def compact_trace(
    full: dict, *, period_start: date, period_end: date, version_id: int, energy_e4: int
) -> dict[str, Any]:
    """The stored form of `build_trace`'s dict (see `expand_trace`)."""
    r = full["r"]
    out: dict[str, Any] = {"v": TRACE_VERSION}
    cr = {"start": _compact_regs(r.get("start")), "end": _compact_regs(r.get("end"))}
    for k in _R_KEYS[2:]:
        v = r.get(k)
        if v is not None and v is not False:
            cr[k] = v
    out["r"] = {k: v for k, v in cr.items() if v is not None}
    if full.get("loss") is not None:
        out["loss"] = full["loss"]
    out["p"] = {k: v for k, v in full["p"].items() if v is not None}
    segs = full.get("seg") or []
    if len(segs) == 1:
        s = segs[0]
        probe = {**out, "vl": s.get("vl", "")}
        if s.get("tou") is not None:
            probe["st"] = 1
        if s.get("ytd") not in (None, "0.0000"):
            probe["ytd"] = s["ytd"]
        kw = {"period_start": period_start, "period_end": period_end, "version_id": version_id}
        if default_segment(probe, **kw, energy_e4=energy_e4) == s:
            out = probe
        else:
            out["seg"] = segs
    else:
        out["seg"] = segs
    if full.get("pfv") is not None:
        out["pfv"] = full["pfv"]
    return out


def expand_trace(
    t: dict | None, *, period_start: date, period_end: date, version_id: int, energy_kwh: Decimal
) -> dict[str, Any]:
    """A bill's stored trace as `build_trace` built it: readings → energy → tariff → segments."""
    if not t or t.get("v") != TRACE_VERSION:
        return t or {}
    r = t.get("r", {})
    out: dict[str, Any] = {
        "r": {
            "start": _expand_regs(r.get("start")),
            "end": _expand_regs(r.get("end")),
            **{k: r.get(k) for k in _R_KEYS[2:7]},
            "est": bool(r.get("est", False)),
            "mchg": bool(r.get("mchg", False)),
        },
        "loss": t.get("loss"),
        "p": {k: t.get("p", {}).get(k) for k in _P_KEYS},
    }
    if "seg" in t:
        out["seg"] = t["seg"]
    else:
        out["seg"] = [
            default_segment(
                t,
                period_start=period_start,
                period_end=period_end,
                version_id=version_id,
                energy_e4=to_scaled(energy_kwh),
            )
        ]
    out["pfv"] = t.get("pfv")
    return out


# --- scalar reference -----------------------------------------------------------------------------
def scalar_tariff(version: TariffVersion, trace: dict, chained: bool) -> Tariff:
    p = trace["p"]
    t = effective_tariff(version, basic_mode=p["bm"], pf_standard=p["pf"], chained=chained)
    b = t.basic
    if isinstance(b, CapacityBasic):
        t = replace(t, basic=CapacityBasic(b.price, Decimal(p["cap"])))
    elif isinstance(b, DemandContractBasic):
        t = replace(t, basic=DemandContractBasic(b.price, Decimal(p["cd"] or "0")))
    elif isinstance(b, DemandActualBasic):
        t = replace(t, basic=DemandActualBasic(b.price, Decimal(p["cap"])))
    return t


def segment_usage(seg: dict, persons: int) -> Usage:
    return Usage(
        kwh=Decimal(seg["kwh"]),
        tou_kwh={k: Decimal(v) for k, v in seg["tou"].items()} if seg["tou"] else None,
        ytd_kwh=Decimal(seg["ytd"]),
        persons=persons,
        kvarh=Decimal(seg["kvarh"]),
        max_demand_kw=Decimal(seg["md"]),
    )


def scalar_rate(trace: dict, versions: dict[int, TariffVersion]) -> list[tuple[int, RatingResult]]:
    """The bill re-rated segment by segment with the scalar engine, from its trace."""
    out = []
    for i, seg in enumerate(trace["seg"]):
        t = scalar_tariff(versions[seg["v"]], trace, seg["ch"])
        period = Period(date.fromisoformat(seg["start"]), date.fromisoformat(seg["end"]))
        out.append((i, rate(t, segment_usage(seg, trace["p"]["persons"]), period)))
    return out
