"""The thin adapter between billing and the apps below it (readings, tariffs, accounts).

Billing reads its inputs and posts its results only through this module, in billing's own plain
shapes (`PointReading`, `TariffVersion`), so a change in a lower app's read model touches one place.
The real modules are used by default; tests may install a `Source` of their own with `use(...)`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from mmis.common.periods import Period
from mmis.rating.tariff import Tariff

REGISTERS = ("sharp", "peak", "flat", "valley")


@dataclass(frozen=True, slots=True)
class PointReading:
    """What a billing run needs of one metering point's readings for a period."""

    point_id: int
    kwh: Decimal | None = None  # billed kWh (× multiplier, rollover and meter changes applied)
    tou_kwh: dict[str, Decimal] | None = None
    kvarh: Decimal | None = None
    max_demand_kw: Decimal | None = None
    multiplier: Decimal | None = None
    estimated: bool = False
    start: dict[str, Any] = field(default_factory=dict)  # start registers (and date)
    end: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why the point is not billable ("" = billable)
    multiplier_changed: bool = False
    start_date: date | None = None  # reading dates (the period the registers cover)
    end_date: date | None = None
    transformer: dict[str, Any] | None = None  # 变损 spec for 高供低计: {"method": "ratio", "ratio": …}
    detail: str = ""  # the lower app's explanation when not billable

    @property
    def billable(self) -> bool:
        return not self.reason


@dataclass(frozen=True, slots=True)
class TariffVersion:
    version_id: int
    code: str
    label: str
    effective_from: date
    effective_to: date | None
    tariff: Tariff  # catalog pricing
    resolved: Any = None  # the lower app's object (for `for_point`)
    tier_year_start_month: int = 1

    basic_prices: dict[str, Decimal] = field(default_factory=dict)

    def for_point(self, *, basic_mode: str, pf_standard: str) -> Tariff:
        """The pricing with the point's basic mode and PF standard (the catalog's own rule); the
        point's capacity or contract demand goes into the batch as `basic_quantity`."""
        from mmis.tariffs.rules import tariff_for_point

        return tariff_for_point(
            pricing=self.tariff,
            basic_prices=self.basic_prices,
            basic_mode=basic_mode or None,
            capacity_kva=Decimal(1),
            contract_demand_kw=Decimal(1),
            pf_standard=pf_standard,
        )


class Source:
    """Where billing gets its inputs and sends its results. The default is the real apps."""

    def billing_inputs(self, *, point_ids: list[int], period: Period) -> dict[int, PointReading]:
        mod = _module("mmis.readings.queries")
        if mod is None or not hasattr(mod, "billing_inputs"):
            return {pid: PointReading(pid, reason="no_reading_source") for pid in point_ids}
        raw = mod.billing_inputs(point_ids=point_ids, period=period)
        return {pid: from_readings(pid, raw.get(pid)) for pid in point_ids}

    def tariffs_in_force(self, *, org: Any, on: date) -> dict[str, TariffVersion]:
        mod = _module("mmis.tariffs.queries")
        if mod is None:
            return {}
        return {code: from_resolved(r) for code, r in mod.tariffs_in_force(org=org, on=on).items()}

    def book_of_points(self, *, point_ids: list[int] | None, org_path: str) -> dict[int, str]:
        """point id → reading book code (readings' book membership, else the point's own code)."""
        try:
            from mmis.readings.models import BookMembership
        except ImportError:  # pragma: no cover - readings not installed
            return {}
        qs = BookMembership.objects.filter(metering_point__org__path__startswith=org_path)
        if point_ids is not None:
            qs = qs.filter(metering_point_id__in=point_ids)
        return dict(qs.values_list("metering_point_id", "book__code"))

    def post_charge(self, *, bill: Any, lines: list[dict], at: Any, actor: Any) -> Any:
        """The released bill as a receivable (accounts.services.post_charge, idempotent on the bill)."""
        mod = _module("mmis.accounts.services")
        if mod is None or not hasattr(mod, "post_charge"):
            raise LedgerMissing("accounts.services.post_charge is not available")
        fields = charge_fields(bill=bill, lines=lines)
        if fields is None:
            return None  # nothing is owed on a zero bill
        return mod.post_charge(**fields, at=at, actor=actor)

    def post_adjustment(self, *, correction: Any, at: Any, actor: Any) -> Any:
        """A correction document against the bill's ledger entry (accounts.services.post_adjustment)."""
        mod = _module("mmis.accounts.services")
        if mod is None or not hasattr(mod, "post_adjustment"):
            raise LedgerMissing("accounts.services.post_adjustment is not available")
        from mmis.accounts.models import LedgerEntry

        original = LedgerEntry.objects.filter(
            source_type="billing.bill", source_id=correction.bill_id
        ).first()
        return mod.post_adjustment(
            account=correction.bill.account,
            original=original,
            direction="debit" if correction.amount > 0 else "credit",
            amount=abs(correction.amount),
            reason=correction.get_reason_display(),
            source_type="billing.correction",
            source_id=correction.pk,
            document_no=correction.number,
            at=at,
            actor=actor,
            due_date=correction.due_date if correction.amount > 0 else None,
        )

    def queue_notice(self, *, bill: Any, at: Any) -> Any:
        """The bill notice through the accounts outbox: e-bill when the account has an address,
        else SMS to the customer's phone."""
        mod = _module("mmis.accounts.notices")
        if mod is None or not hasattr(mod, "queue_notice"):
            return None
        fields = notice_fields(bill)
        if fields is None:
            return None
        return mod.queue_notice(**fields, at=at)

    def queue_notices(self, *, bills: list[Any], at: Any) -> int:
        """The notices of many released bills in one set-based enqueue (accounts.notices
        .queue_notices), each shaped as `queue_notice` shapes one; bills without an address or a
        phone get none. Returns how many were queued."""
        mod = _module("mmis.accounts.notices")
        if mod is None or not hasattr(mod, "queue_notices"):
            return sum(1 for b in bills if self.queue_notice(bill=b, at=at) is not None)
        items = [mod.NoticeItem(**f) for f in map(notice_fields, bills) if f is not None]
        return mod.queue_notices(items=items, at=at) if items else 0


def notice_fields(bill: Any) -> dict[str, Any] | None:
    """A released bill's notice as the arguments of accounts' `queue_notice` (without `at`)."""
    account, customer = bill.account, bill.customer
    if account.ebill_email:
        channel, recipient = "ebill", account.ebill_email
    else:
        from mmis.customers.crypto import cipher

        phone = cipher().decrypt(customer.phone_enc) if customer.phone_enc else ""
        channel, recipient = "sms", phone
    if not recipient:
        return None
    return {
        "channel": channel,
        "recipient": recipient,
        "template": "bill.issued",
        "payload": bill_notice_payload(bill),
        "org": bill.org,
        "account": account,
        "dedupe_key": f"bill.issued:{bill.pk}",
    }


def bill_notice_payload(bill: Any) -> dict[str, str]:
    return {
        "name": bill.customer.name,
        "account_no": bill.account.account_no,
        "month": f"{bill.period_start:%Y年%m月}",
        "kwh": f"{bill.energy_kwh.normalize():f}",
        "amount": str(bill.amount),
        "due_date": f"{bill.due_date:%Y年%m月%d日}" if bill.due_date else "",
        "bill_no": bill.number,
        "text": (
            f"【供电公司】尊敬的{bill.customer.name}:您{bill.period_start:%Y年%m月}电量"
            f"{bill.energy_kwh.normalize():f}千瓦时,电费{bill.amount}元,"
            f"请于{bill.due_date:%Y年%m月%d日}前缴纳。账单号{bill.number}。"
            if bill.due_date
            else ""
        ),
    }


class LedgerMissing(RuntimeError):
    pass


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        if isinstance(obj, dict):
            if n in obj:
                return obj[n]
        elif hasattr(obj, n):
            return getattr(obj, n)
    return default


def _dec(v: Any) -> Decimal | None:
    if v is None:
        return None
    return v if isinstance(v, Decimal) else Decimal(str(v))


def from_readings(point_id: int, r: Any) -> PointReading:
    """readings' BillingReading (or a dict of the same names) → PointReading."""
    if r is None:
        return PointReading(point_id, reason="no_reading")
    if hasattr(r, "kwh_by_rate") and hasattr(r, "billable") and not isinstance(r, dict):
        return _fast(point_id, r)
    reason = _get(r, "reason", "not_billable_reason", default="") or ""
    if _get(r, "billable", default=True) is False and not reason:
        reason = "not_billable"
    if reason:
        return PointReading(
            point_id,
            reason=str(reason),
            multiplier=_dec(_get(r, "multiplier")),
            detail=str(_get(r, "detail", default="") or "")[:200],
        )
    tou = _get(r, "tou_kwh", "kwh_by_rate")
    tou_dec = {k: _dec(v) for k, v in tou.items() if v is not None} if tou else None
    kwh = _dec(_get(r, "kwh", "total_kwh", "billed_kwh"))
    if kwh is None and tou_dec:
        kwh = sum(tou_dec.values(), Decimal(0))
    start, end = _get(r, "start", "start_registers", default={}), _get(r, "end", "end_registers", default={})
    return PointReading(
        point_id=point_id,
        kwh=kwh,
        tou_kwh=tou_dec or None,
        kvarh=_dec(_get(r, "kvarh")),
        max_demand_kw=_dec(_get(r, "max_demand_kw", "max_demand")),
        multiplier=_dec(_get(r, "multiplier")),
        estimated=bool(_get(r, "estimated", default=False)),
        start=_jsonable(start),
        end=_jsonable(end),
        multiplier_changed=bool(_get(r, "multiplier_changed", "meter_changed", default=False)),
        start_date=_get(r, "start_date"),
        end_date=_get(r, "end_date"),
    )


def _fast(point_id: int, r: Any) -> PointReading:
    """readings' own BillingReading (a slotted dataclass), read attribute by attribute."""
    if not r.billable:
        return PointReading(
            point_id,
            reason=str(r.reason or "not_billable"),
            multiplier=r.multiplier,
            detail=(r.detail or "")[:200],
        )
    return PointReading(
        point_id,
        kwh=r.kwh,
        tou_kwh=r.kwh_by_rate or None,
        kvarh=r.kvarh,
        max_demand_kw=r.max_demand_kw,
        multiplier=r.multiplier,
        estimated=r.estimated,
        start=r.start or {},
        end=r.end or {},
        start_date=r.start_date,
        end_date=r.end_date,
        multiplier_changed=bool(
            getattr(r, "multiplier_changed", False) or getattr(r, "meter_changed", False)
        ),
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Decimal | date):
        return str(v)
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__}
    return v


def from_resolved(r: Any) -> TariffVersion:
    return TariffVersion(
        version_id=int(r.version_id),
        code=r.code,
        label=_get(r, "version_label", "label", default="") or "",
        effective_from=r.effective_from,
        effective_to=_get(r, "effective_to"),
        tariff=r.tariff,
        resolved=r,
        tier_year_start_month=int(_get(r, "tier_year_start_month", default=1) or 1),
        basic_prices={k: Decimal(str(v)) for k, v in (_get(r, "basic_prices", default={}) or {}).items()},
    )


_source: Source = Source()


def source() -> Source:
    return _source


@contextlib.contextmanager
def use(src: Source) -> Iterator[Source]:
    """Install another source (tests, benchmarks) for the duration of the block."""
    global _source
    old, _source = _source, src
    try:
        yield src
    finally:
        _source = old


def charge_fields(*, bill: Any, lines: list[dict]) -> dict | None:
    """A released bill as the fields of one ledger charge (accounts.services.post_charge or a
    ChargeItem of post_charges): electricity and funds by the point's usage category; None for a
    bill that owes nothing."""
    if bill.amount <= 0:
        return None
    category = bill.point.usage_category
    groups: dict[str, Decimal] = {}
    for ln in lines:
        key = "fund" if ln["code"].startswith("fund.") else "electricity"
        groups[key] = groups.get(key, Decimal("0.00")) + ln["amount"]
    charge_lines = [{"code": k, "category": category, "amount": v} for k, v in groups.items() if v > 0]
    if sum((x["amount"] for x in charge_lines), Decimal(0)) != bill.amount:
        charge_lines = []
    return {
        "account": bill.account,
        "amount": bill.amount,
        "source_type": "billing.bill",
        "source_id": bill.pk,
        "document_no": bill.number,
        "due_date": bill.due_date,
        "lines": charge_lines or None,
        "memo": f"{bill.period_start:%Y-%m} 电费",
    }
