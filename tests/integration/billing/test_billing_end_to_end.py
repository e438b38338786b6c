"""Billing with the REAL lower apps, no fake source: the demo tariff catalog imported through
mmis.tariffs.services, meters installed through mmis.assets, readings recorded and validated
through mmis.readings.services, then a billing month run → audit → release, and the ledger,
the notice and a correction (退补) checked through mmis.accounts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mmis.billing import calc, services
from mmis.billing.models import Bill, BillingRun, Correction, RunException
from mmis.common.periods import Period

AT = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
MARCH = Period.month(2026, 3)
READ_DATES = [date(2026, 1, 25), date(2026, 2, 25), date(2026, 3, 25)]


def _point(customer, *, n: int, tariff_code: str, category: str = "residential", tou: bool = False, **extra):
    from mmis.assets import services as assets
    from mmis.customers import services as cs

    data = {
        "usage_category": category,
        "voltage_level": "220V" if category == "residential" else "10kV",
        "tariff_code": tariff_code,
        "reading_book_code": "E2E01" if customer.org.code.endswith("0101") else "E2E02",
        "contract_capacity_kva": "8" if category == "residential" else "400",
        "tou": tou,
        **extra,
    }
    point = cs.add_metering_point(actor=None, customer=customer, data=data)
    meter = assets.register_meter(
        actor=None,
        org=customer.org,
        asset_no=f"E2E{n:06d}",
        kind="single_phase" if category == "residential" else "three_phase_4w",
        register_digits=6,
        tou=tou,
        comm_address=f"{n:012d}",
    )
    return assets.install(actor=None, point=point, meter=meter, transformers=[], on=date(2025, 1, 1))


def _read(point, totals: list[str], *, tou_shares: tuple[str, ...] = (), reactive: list[str] = ()) -> list:
    """Billable readings on READ_DATES with the given total registers (TOU registers by shares)."""
    from mmis.readings import services as rs

    out = []
    for i, (day, total) in enumerate(zip(READ_DATES[: len(totals)], totals, strict=True)):
        values = {"total": total}
        if tou_shares:
            t = Decimal(total)
            parts = [(t * Decimal(s)).quantize(Decimal("0.01")) for s in tou_shares[:3]]
            values.update(
                sharp=str(parts[0]), peak=str(parts[1]), flat=str(parts[2]), valley=str(t - sum(parts))
            )
        if reactive:
            values["reactive"] = reactive[i]
        r = rs.record_reading(
            actor=None,
            point=point,
            reading_date=day,
            values=values,
            at=datetime.combine(day, datetime.min.time(), tzinfo=UTC),
        )
        out.append(r)
    return out


@pytest.fixture
def world(utility):
    from mmis.cli.demo.step_tariffs import demo_catalog
    from mmis.org import services as org_services
    from mmis.readings import services as rs
    from mmis.tariffs import services as ts

    admin = utility.users["admin"]
    ts.import_catalog(actor=admin, payload=demo_catalog(utility.province.code), at=AT.replace(year=2024))
    a, b = utility.customers["a"], utility.customers["b"]
    pts = {
        "res": _point(a, n=1, tariff_code="RES-TIER"),
        "res2": _point(a, n=2, tariff_code="RES-TIER"),
        "gci": _point(b, n=3, tariff_code="GCI-FLAT", category="general_ci"),
        "tou": _point(b, n=4, tariff_code="GCI-TOU", category="general_ci", tou=True, pf_standard="0.85"),
        "noread": _point(a, n=5, tariff_code="RES-TIER"),
        "notariff": _point(a, n=6, tariff_code="NO-SUCH"),
    }
    books = {}
    for code, st in (("E2E01", utility.stations[0]), ("E2E02", utility.stations[1])):
        books[code] = rs.create_book(
            actor=None, org=st, code=code, name=f"端到端 {code}", reading_day=25, method="manual", at=AT
        )
        mine = [p for p in pts.values() if p.org_id == st.pk]
        rs.assign_points(actor=None, book=books[code], points=mine, at=AT)
    readings = {
        "res": _read(pts["res"], ["1000.00", "1440.00", "1890.00"]),  # 450 kWh in March
        "res2": _read(pts["res2"], ["500.00", "880.00", "1260.00"]),  # 380 kWh in March
        "gci": _read(pts["gci"], ["20000.00", "24100.00", "28300.00"]),  # 4,200 kWh
        "tou": _read(
            pts["tou"],
            ["30000.00", "33900.00", "37900.00"],  # 4,000 kWh
            tou_shares=("0.1", "0.3", "0.35"),
            reactive=["9000.00", "10500.00", "12100.00"],  # 1,600 kvarh → PF 0.93
        ),
        "noread": _read(pts["noread"], ["100.00", "300.00"]),  # not read in March
        "notariff": _read(pts["notariff"], ["10.00", "20.00", "30.00"]),
    }
    auditor = org_services.create_user(
        username="auditor", password="Mmis@2026-test", org=utility.province, roles=["billing_auditor"]
    )
    return {"utility": utility, "points": pts, "readings": readings, "auditor": auditor, "books": books}


def _run(world) -> BillingRun:
    run = services.plan_run(org=world["utility"].province, month=MARCH, actor=world["auditor"], at=AT)
    return services.run_in_process(run)


def _bill(world, name) -> Bill:
    return Bill.objects.get(point=world["points"][name], period_start=MARCH.start)


def test_readings_are_valid_billable_inputs(world):
    from mmis.readings.models import MeterReading

    for name in ("res", "res2", "gci", "tou"):
        statuses = set(
            MeterReading.objects.filter(metering_point=world["points"][name]).values_list("status", flat=True)
        )
        assert statuses <= set(MeterReading.BILLABLE), (name, statuses)


def test_a_month_with_the_real_readings_tariffs_and_ledger(world, django_capture_on_commit_callbacks):
    from mmis.accounts import queries as ledger
    from mmis.accounts.models import LedgerEntry, Notice

    run = _run(world)
    assert run.state == BillingRun.State.CALCULATED, list(run.partitions.values_list("error", flat=True))
    pts = world["points"]
    # the partition is the reading book the readings app assigned
    assert sorted(run.partitions.values_list("key", flat=True)) == ["E2E01", "E2E02"]
    assert run.bills == 4 and run.exceptions == 2

    res = _bill(world, "res")
    # DOMAIN §3.2 monthly bands: 210 × 0.5469 + 190 × 0.5969 + 50 × 0.8469, and the residential funds
    assert res.energy_kwh == Decimal("450.0000")
    amounts = {ln.code: ln.amount for ln in res.lines.all()}
    assert amounts["energy.tier1"] == Decimal("114.85")
    assert amounts["energy.tier2"] == Decimal("113.41")
    assert amounts["energy.tier3"] == Decimal("42.35")
    assert amounts["fund.reservoir_resettlement"] == Decimal("2.79")  # 450 × 0.0062
    assert res.amount == sum(amounts.values())
    assert (
        Decimal(res.full_trace["r"]["start"]["total"]) == 1440
        and Decimal(res.full_trace["r"]["end"]["total"]) == 1890
    )
    assert res.tariff_version_id and res.full_trace["seg"][0]["vl"] == "2025版"

    gci = _bill(world, "gci")
    assert gci.energy_kwh == Decimal("4200.0000")
    assert {ln.code for ln in gci.lines.all()} >= {
        "component.agency_purchase",
        "component.line_loss",
        "component.system_operation",
    }
    tou = _bill(world, "tou")
    assert tou.energy_kwh == Decimal("4000.0000")
    assert tou.full_trace["pfv"] == "0.93"
    assert {"energy.sharp", "energy.peak", "energy.flat", "energy.valley"} <= {
        ln.code for ln in tou.lines.all()
    }

    # every bill re-rated with the scalar engine from its trace gives the same lines
    versions = services.run_versions(run.pk)
    for bill in Bill.objects.filter(run=run):
        results = calc.scalar_rate(bill.full_trace, versions)
        assert bill.amount == sum(r.total for _, r in results), bill.number

    reasons = dict(RunException.objects.filter(run=run).values_list("point_id", "reason"))
    assert reasons == {pts["noread"].pk: "missing", pts["notariff"].pk: "no_tariff"}
    messages = dict(RunException.objects.filter(run=run).values_list("reason", "message"))
    assert messages["missing"].startswith("本期无抄表示数") and messages["no_tariff"] == "无执行电价: NO-SUCH"

    # audit: first bills are held; the auditor approves them all, then releases the run
    assert set(Bill.objects.filter(run=run).values_list("state", flat=True)) == {Bill.State.FLAGGED}
    held = list(Bill.objects.filter(run=run).exclude(flags=[]).values_list("pk", flat=True))
    assert len(held) == 4  # first bill of every point
    services.approve_bills(bill_ids=held, actor=world["auditor"], at=AT)
    with django_capture_on_commit_callbacks(execute=True):
        released = services.release_run(run=run, actor=world["auditor"], at=AT)
    assert released == 4
    run.refresh_from_db()
    assert run.state == BillingRun.State.RELEASED and run.released_bills == 4

    res.refresh_from_db()
    assert res.state == Bill.State.ISSUED and res.due_date == date(2026, 4, 22)  # residential: 20 days
    entry = LedgerEntry.objects.get(source_type="billing.bill", source_id=res.pk)
    assert entry.amount == res.amount and entry.document_no == res.number
    # customer a has the two residential bills; customer b the two C&I ones, on their own accounts
    assert ledger.balance(res.account) == res.amount + _bill(world, "res2").amount
    items = ledger.open_items(res.account, on=date(2026, 4, 10))
    assert sorted(i.open for i in items) == sorted([res.amount, _bill(world, "res2").amount])
    assert all(i.entry.due_date == date(2026, 4, 22) for i in items)
    assert ledger.balance(gci.account) == gci.amount + tou.amount

    notice = Notice.objects.get(dedupe_key=f"bill.issued:{res.pk}")
    assert notice.template == "bill.issued" and notice.channel == "sms"
    assert notice.recipient == "13912345678"
    assert notice.payload["amount"] == str(res.amount) and res.number in notice.payload["text"]
    assert Notice.objects.filter(template="bill.issued").count() == 4

    # releasing again changes nothing: no second charge, no second notice
    assert services.release_run(run=run, actor=world["auditor"], at=AT) == 0
    assert LedgerEntry.objects.filter(source_type="billing.bill").count() == 4


def test_a_correction_posts_an_adjustment_against_the_bill(world):
    from mmis.accounts import queries as ledger
    from mmis.accounts.models import LedgerEntry

    run = _run(world)
    services.approve_bills(
        bill_ids=list(Bill.objects.filter(run=run).values_list("pk", flat=True)),
        actor=world["auditor"],
        at=AT,
    )
    services.release_run(run=run, actor=world["auditor"], at=AT)
    bill = _bill(world, "res2")  # billed 380 kWh, the true reading was 420 kWh (DOMAIN §4.4)
    before = ledger.balance(bill.account)
    c = services.request_correction(
        bill=bill, reason="reading_error", usage={"kwh": "420"}, actor=world["auditor"], at=AT
    )
    assert c.kind == Correction.Kind.DEBIT and c.amount > Decimal("28.88")  # 28.88 + the funds on 40 kWh
    energy = sum(Decimal(x["amount"]) for x in c.lines if x["code"].startswith("energy."))
    assert energy == Decimal("28.88")  # re-rated, not repriced (23.88 would be wrong)
    assert ledger.balance(bill.account) == before  # nothing posted before approval
    approved = services.approve_correction(
        correction=c, actor=world["utility"].users["manager"], at=AT.replace(day=5)
    )
    assert approved.state == Correction.State.APPROVED and approved.due_date == date(2026, 4, 25)
    adj = LedgerEntry.objects.get(source_type="billing.correction", source_id=c.pk)
    assert adj.amount == c.amount and adj.kind == "adjustment_debit"
    assert ledger.balance(bill.account) == before + c.amount
    assert c.amount in [i.open for i in ledger.open_items(bill.account)]
    # the original bill's entry is untouched
    orig = LedgerEntry.objects.get(source_type="billing.bill", source_id=bill.pk)
    assert orig.amount == bill.amount


def test_a_credit_correction_settles_against_the_original(world):
    from mmis.accounts import queries as ledger

    run = _run(world)
    services.approve_bills(
        bill_ids=list(Bill.objects.filter(run=run).values_list("pk", flat=True)),
        actor=world["auditor"],
        at=AT,
    )
    services.release_run(run=run, actor=world["auditor"], at=AT)
    bill = _bill(world, "res")
    before = ledger.balance(bill.account)
    c = services.request_correction(
        bill=bill, reason="reading_error", usage={"kwh": "400"}, actor=world["auditor"], at=AT
    )
    assert c.kind == Correction.Kind.CREDIT and c.amount < 0
    services.approve_correction(correction=c, actor=world["utility"].users["manager"], at=AT)
    assert ledger.balance(bill.account) == before + c.amount
    open_now = {i.entry.source_id: i.open for i in ledger.open_items(bill.account)}
    assert open_now[bill.pk] == bill.amount + c.amount  # the credit settled the original first


def test_a_corrected_reading_is_billed_by_rerunning_the_partition(world):
    """A point set aside for a missing reading gets its bill once the reading is in."""
    from mmis.readings import services as rs

    run = _run(world)
    noread = world["points"]["noread"]
    assert RunException.objects.filter(run=run, point=noread).exists()
    rs.record_reading(
        actor=None,
        point=noread,
        reading_date=date(2026, 3, 26),
        values={"total": "480.00"},
        at=AT,
    )
    p = run.partitions.get(key="E2E01")
    services.retry_partition(partition=p, actor=world["auditor"], at=AT)
    run.refresh_from_db()
    assert run.bills == 5 and run.exceptions == 1
    assert Bill.objects.get(point=noread).energy_kwh == Decimal("180.0000")
