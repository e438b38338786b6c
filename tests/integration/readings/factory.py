"""Builders shared by the readings integration and functional tests (loaded by their conftests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)
PASSWORD = "Mmis@2026-test"


@dataclass
class ReadingWorld:
    utility: object
    reader: object
    auditor: object
    book: object
    points: list = field(default_factory=list)
    meters: list = field(default_factory=list)


def add_point(
    utility,
    customer,
    *,
    n: int,
    tou: bool = False,
    category: str = "residential",
    digits: int = 6,
    multiplier_ct: Decimal | None = None,
):
    from mmis.assets import services as assets
    from mmis.customers import services as cs

    data = {
        "usage_category": category,
        "voltage_level": "220V" if category == "residential" else "10kV",
        "contract_capacity_kva": "8" if category == "residential" else "400",
        "tou": tou,
    }
    if category != "residential":
        data.update({"basic_charge_mode": "capacity", "pf_standard": "0.90"})
    point = cs.add_metering_point(actor=None, customer=customer, data=data)
    meter = assets.register_meter(
        actor=None,
        org=customer.org,
        asset_no=f"M{n:08d}",
        kind="single_phase",
        register_digits=digits,
        tou=tou,
        comm_address=f"{n:012d}",
    )
    cts = []
    if multiplier_ct:
        cts.append(
            assets.register_transformer(
                actor=None,
                org=customer.org,
                asset_no=f"CT{n:06d}",
                kind="ct",
                primary=multiplier_ct * 5,
                secondary=Decimal(5),
            )
        )
    point = assets.install(actor=None, point=point, meter=meter, transformers=cts, on=date(2025, 1, 1))
    meter.refresh_from_db()
    return point, meter


def build_world(utility, *, points: int = 3) -> ReadingWorld:
    from mmis.org import services as org_services
    from mmis.readings import services as rs

    st = utility.stations[0]
    reader = org_services.create_user(
        username="reader_a", password=PASSWORD, org=st, roles=["meter_reader"], display_name="王抄表"
    )
    auditor = org_services.create_user(
        username="auditor_a",
        password=PASSWORD,
        org=utility.counties[0],
        roles=["billing_auditor"],
        display_name="李核算",
    )
    book = rs.create_book(
        actor=None,
        org=st,
        code="B0001",
        name="城关一段",
        reading_day=25,
        reader=reader,
        method="manual",
        at=AT,
    )
    w = ReadingWorld(utility, reader, auditor, book)
    for i in range(points):
        p, m = add_point(utility, utility.customers["a"], n=i + 1, tou=(i == 1))
        w.points.append(p)
        w.meters.append(m)
    rs.assign_points(actor=None, book=book, points=w.points, at=AT)
    return w


def seed_history(world, point, totals, *, start=date(2025, 10, 25), tou=False):
    """Billable readings on the 25th of consecutive months with the given totals."""
    from mmis.readings import services as rs

    out = []
    d = start
    for t in totals:
        values = {"total": str(t)}
        if tou:
            t = Decimal(str(t))
            q = (t / 4).quantize(Decimal("0.01"))
            values.update(sharp=str(q), peak=str(q), flat=str(q), valley=str(t - 3 * q))
        out.append(
            rs.record_reading(
                actor=None,
                point=point,
                reading_date=d,
                values=values,
                at=datetime.combine(d, datetime.min.time(), tzinfo=UTC),
            )
        )
        d = date(d.year + (d.month == 12), d.month % 12 + 1, d.day)
    return out
