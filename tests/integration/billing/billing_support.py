"""Fakes and builders for the billing tests: an input source with readings and tariff versions of
our own, a ledger that records charges, and metering points on the shared small utility."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from mmis.billing.inputs import PointReading, Source, TariffVersion
from mmis.common.periods import Period
from mmis.rating.tariff import parse_tariff

RESIDENTIAL = {
    "energy": {
        "type": "tiered",
        "basis": "monthly",
        "tiers": [
            {"up_to": "210", "price": "0.5469"},
            {"up_to": "400", "price": "0.5969"},
            {"up_to": None, "price": "0.8469"},
        ],
    },
    "funds": [],
}
RESIDENTIAL_2026 = {
    "energy": {
        "type": "tiered",
        "basis": "monthly",
        "tiers": [
            {"up_to": "210", "price": "0.5669"},
            {"up_to": "400", "price": "0.6169"},
            {"up_to": None, "price": "0.8669"},
        ],
    },
    "funds": [],
}
GENERAL = {
    "energy": {"type": "flat", "price": "0.6500"},
    "funds": [{"code": "renewable", "price": "0.019"}, {"code": "hydro_project", "price": "0.00196875"}],
}
LARGE = {  # DOMAIN §3.8
    "energy": {
        "type": "tou",
        "prices": {"sharp": "1.2750", "peak": "1.0200", "flat": "0.6000", "valley": "0.2280"},
    },
    "basic": {"type": "demand_contract", "price": "28", "contract_kw": "1000"},
    "power_factor": {"standard": "0.90"},
    "funds": [
        {"code": "hydro_project", "price": "0.00196875"},
        {"code": "reservoir_resettlement", "price": "0.0062"},
        {"code": "renewable", "price": "0.019"},
        {"code": "rural_grid_loan", "price": "0.02"},
    ],
}


def version(vid: int, code: str, pricing: dict, effective_from: date, label: str = "") -> TariffVersion:
    return TariffVersion(
        version_id=vid,
        code=code,
        label=label or f"{code} {effective_from:%Y-%m}",
        effective_from=effective_from,
        effective_to=None,
        tariff=parse_tariff(pricing),
    )


class FakeSource(Source):
    def __init__(self) -> None:
        self.readings: dict[int, PointReading] = {}
        self.versions: list[TariffVersion] = [
            version(1, "RES", RESIDENTIAL, date(2020, 1, 1)),
            version(2, "GEN", GENERAL, date(2020, 1, 1)),
            version(3, "LI", LARGE, date(2020, 1, 1)),
        ]
        self.charges: dict[tuple[str, int], dict[str, Any]] = {}
        self.adjustments: dict[tuple[str, int], dict[str, Any]] = {}
        self.notices: list[dict[str, Any]] = []
        self.input_calls = 0

    def billing_inputs(self, *, point_ids, period: Period):
        self.input_calls += 1
        return {pid: self.readings[pid] for pid in point_ids if pid in self.readings}

    def tariffs_in_force(self, *, org, on):
        out: dict[str, TariffVersion] = {}
        by_code: dict[str, list[TariffVersion]] = {}
        for v in sorted(self.versions, key=lambda v: v.effective_from):
            by_code.setdefault(v.code, []).append(v)
        for code, vs in by_code.items():
            live = [v for v in vs if v.effective_from <= on]
            if not live:
                continue
            cur = live[-1]
            later = [v.effective_from for v in vs if v.effective_from > on]
            out[code] = TariffVersion(
                cur.version_id, code, cur.label, cur.effective_from, min(later) if later else None, cur.tariff
            )
        return out

    def book_of_points(self, *, point_ids, org_path):
        return {}

    def post_charge(self, *, bill, lines, at, actor):
        self.charges.setdefault(
            ("billing.bill", bill.pk),
            {"amount": bill.amount, "document_no": bill.number, "due_date": bill.due_date, "lines": lines},
        )

    def post_adjustment(self, *, correction, at, actor):
        self.adjustments.setdefault(
            ("billing.correction", correction.pk),
            {"amount": correction.amount, "original_source_id": correction.bill_id},
        )

    def queue_notice(self, *, bill, at):
        from mmis.billing.inputs import bill_notice_payload

        self.notices.append({"source_id": bill.pk, "body": bill_notice_payload(bill)["text"]})


def reading(pid: int, kwh: str, **kw) -> PointReading:
    return PointReading(pid, kwh=Decimal(kwh), multiplier=kw.pop("multiplier", Decimal(1)), **kw)


def add_point(customer, *, tariff_code: str, book: str, category: str = "residential", **extra):
    from mmis.customers import services as cs

    data = {
        "usage_category": category,
        "voltage_level": "220V" if category == "residential" else "10kV",
        "tariff_code": tariff_code,
        "reading_book_code": book,
        "contract_capacity_kva": extra.pop("capacity", "8" if category == "residential" else "1250"),
        **extra,
    }
    return cs.add_metering_point(actor=None, customer=customer, data=data)


def new_customer(org, n: int, *, kind: str = "individual"):
    from mmis.customers import services as cs

    return cs.create_customer(
        actor=None,
        org=org,
        opened_on=date(2025, 1, 1),
        data={
            "kind": "individual",
            "name": f"测试客户{n}",
            "id_type": "passport",
            "id_number": f"E{n:08d}",
            "phone": f"139{n:08d}",
            "address": {"region": "示范省", "detail": f"测试路{n}号"},
        },
    )


def LI_USAGE(pid: int) -> PointReading:
    return PointReading(
        pid,
        kwh=Decimal(400000),
        tou_kwh={
            "sharp": Decimal(20000),
            "peak": Decimal(100000),
            "flat": Decimal(120000),
            "valley": Decimal(160000),
        },
        kvarh=Decimal(250000),
        max_demand_kw=Decimal(1200),
        multiplier=Decimal(4000),
    )


def snapshot(run) -> dict[str, Any]:
    """Everything a run wrote, keyed by metering point (ids of bills, runs and partitions left out):
    bills with their stored trace (and the expanded one), lines, flags, exceptions and counters."""
    from mmis.billing.models import AuditFlag, Bill, BillLine, RunException

    bills = {}
    for b in Bill.objects.filter(run=run):
        bills[b.point_id] = {
            "number": b.number,
            "org": b.org_id,
            "customer": b.customer_id,
            "account": b.account_id,
            "period": (b.period_start, b.period_end),
            "tariff": (b.tariff_code, b.tariff_version_id),
            "state": b.state,
            "energy_kwh": b.energy_kwh,
            "amount": b.amount,
            "estimated": b.estimated,
            "prorated": b.prorated,
            "risk": b.risk,
            "flags": b.flags,
            "trace": b.trace,
            "full_trace": b.full_trace,
            "lines": [
                (ln.seq, ln.segment, ln.code, ln.quantity, ln.price, ln.amount)
                for ln in BillLine.objects.filter(bill=b).order_by("seq")
            ],
            "audit_flags": sorted(
                AuditFlag.objects.filter(bill=b).values_list("code", "message", "weight"), key=lambda f: f[0]
            ),
        }
    exceptions = {e.point_id: (e.reason, e.message) for e in RunException.objects.filter(run=run)}
    run.refresh_from_db()
    counters = {
        k: getattr(run, k)
        for k in ("state", "bills", "exceptions", "flagged", "skipped_issued", "energy_kwh", "amount")
    }
    return {"bills": bills, "exceptions": exceptions, "run": counters}
