"""Billing runs against the database: run → audit → release → ledger; idempotent reruns, killed
partitions, exceptions, proration, corrections, and the vector engine equal to the scalar one."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from billing_support import LI_USAGE, FakeSource, add_point, new_customer, reading, version

from mmis.billing import calc, inputs, services, writer
from mmis.billing.models import AuditRule, Bill, BillingRun, BillLine, Correction, RunException, RunPartition
from mmis.common.errors import InvalidInput
from mmis.common.periods import Period

AT = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)
MARCH = Period.month(2026, 3)


@pytest.fixture
def world(utility, monkeypatch):
    from mmis.org import services as org_services

    monkeypatch.setattr(services, "PARTITION_TARGET_POINTS", 1)  # one reading book per partition

    fake = FakeSource()
    st = utility.stations[0]
    pts = {}
    for i, (name, kwh) in enumerate([("r450", "450"), ("r380", "380"), ("r100", "100"), ("r0", "0")]):
        c = new_customer(st, 100 + i)
        pts[name] = add_point(c, tariff_code="RES", book="B01")
        fake.readings[pts[name].pk] = reading(pts[name].pk, kwh)
    c = new_customer(st, 200)
    pts["est"] = add_point(c, tariff_code="RES", book="B01")
    fake.readings[pts["est"].pk] = reading(pts["est"].pk, "250", estimated=True)
    c = new_customer(st, 300)
    pts["gen"] = add_point(c, tariff_code="GEN", book="B02", category="general_ci")
    fake.readings[pts["gen"].pk] = reading(pts["gen"].pk, "12345.6789", multiplier=Decimal(40))
    c = new_customer(st, 301)
    pts["li"] = add_point(
        c,
        tariff_code="LI",
        book="B02",
        category="large_industry",
        basic_charge_mode="demand_contract",
        contract_demand_kw="1000",
        pf_standard="0.90",
        tou=True,
    )
    fake.readings[pts["li"].pk] = LI_USAGE(pts["li"].pk)
    c = new_customer(st, 400)
    pts["noread"] = add_point(c, tariff_code="RES", book="B02")
    c = new_customer(st, 401)
    pts["notariff"] = add_point(c, tariff_code="NOPE", book="B02")
    fake.readings[pts["notariff"].pk] = reading(pts["notariff"].pk, "10")
    c = new_customer(st, 402)
    pts["mult0"] = add_point(c, tariff_code="RES", book="B02")
    fake.readings[pts["mult0"].pk] = reading(pts["mult0"].pk, "10", multiplier=Decimal(0))
    auditor = org_services.create_user(
        username="auditor", password="Mmis@2026-test", org=utility.province, roles=["billing_auditor"]
    )
    with inputs.use(fake):
        yield {"fake": fake, "points": pts, "utility": utility, "auditor": auditor}


def _run(world, month=MARCH) -> BillingRun:
    run = services.plan_run(org=world["utility"].province, month=month, actor=None, at=AT)
    return services.run_in_process(run)


def _bill(world, name, month=MARCH) -> Bill:
    return Bill.objects.get(point=world["points"][name], period_start=month.start)


def test_run_bills_every_billable_point_and_sets_the_rest_aside(world):
    run = _run(world)
    assert run.state == BillingRun.State.CALCULATED
    assert run.partitions_total == 2 and run.partitions_done == 2
    assert run.bills == 7 and Bill.objects.filter(run=run).count() == 7
    assert _bill(world, "r450").amount == Decimal("270.61")  # DOMAIN §3.2
    assert [(ln.code, ln.amount) for ln in _bill(world, "r450").lines.all()] == [
        ("energy.tier1", Decimal("114.85")),
        ("energy.tier2", Decimal("113.41")),
        ("energy.tier3", Decimal("42.35")),
    ]
    assert _bill(world, "li").amount == Decimal("299492.00")  # DOMAIN §3.8, the worked bill
    assert _bill(world, "li").full_trace["pfv"] == "0.85"
    reasons = dict(RunException.objects.filter(run=run).values_list("point_id", "reason"))
    pts = world["points"]
    assert reasons == {
        pts["noread"].pk: "no_reading",
        pts["notariff"].pk: "no_tariff",
        pts["mult0"].pk: "multiplier_zero",
    }
    assert run.exceptions == 3
    assert run.amount == sum(Bill.objects.filter(run=run).values_list("amount", flat=True))


def test_vector_bills_equal_the_scalar_engine(world):
    run = _run(world)
    versions = services.run_versions(run.pk)
    for bill in Bill.objects.filter(run=run):
        results = calc.scalar_rate(bill.full_trace, versions)
        expected = [(s, ln.code, ln.quantity, ln.price, ln.amount) for s, r in results for ln in r.lines]
        got = [(ln.segment, ln.code, ln.quantity, ln.price, ln.amount) for ln in bill.lines.all()]
        assert got == expected, bill.number
        assert bill.amount == sum(r.total for _, r in results)
        assert bill.amount == sum(ln.amount for ln in bill.lines.all())


def test_rerunning_a_partition_replaces_only_its_own_bills(world):
    run = _run(world)
    p = run.partitions.get(key="B01")
    other = run.partitions.get(key="B02")
    other_ids = set(Bill.objects.filter(partition=other).values_list("pk", flat=True))
    before = Bill.objects.filter(partition=p).count(), BillLine.objects.filter(bill__partition=p).count()
    world["fake"].readings[world["points"]["r100"].pk] = reading(world["points"]["r100"].pk, "120")
    services.retry_partition(partition=p, actor=None, at=AT)
    assert (
        Bill.objects.filter(partition=p).count(),
        BillLine.objects.filter(bill__partition=p).count(),
    ) == before
    assert Bill.objects.filter(point=world["points"]["r100"]).get().amount == Decimal("65.63")  # 120 × 0.5469
    assert set(Bill.objects.filter(partition=other).values_list("pk", flat=True)) == other_ids
    assert Bill.objects.count() == 7
    p.refresh_from_db()
    assert p.attempt == 2 and p.state == RunPartition.State.DONE


def test_a_killed_partition_leaves_nothing_and_resumes(world, monkeypatch):
    real = writer.write_bills

    def dies_mid_write(bills, lines, flags, exceptions):
        real(bills, lines[: len(lines) // 2], [], [])  # bills and half the lines are in …
        raise SystemError("worker killed")  # … when the worker dies

    monkeypatch.setattr(writer, "write_bills", dies_mid_write)
    run = services.plan_run(org=world["utility"].province, month=MARCH, actor=None, at=AT)
    run = services.run_in_process(run)
    assert run.partitions_failed == 2 and run.state == BillingRun.State.RUNNING
    assert Bill.objects.count() == 0 and BillLine.objects.count() == 0 and RunException.objects.count() == 0
    assert "worker killed" in run.partitions.first().error
    monkeypatch.setattr(writer, "write_bills", real)
    run = services.run_in_process(run)  # resume: only the partitions not done
    assert run.state == BillingRun.State.CALCULATED
    assert Bill.objects.count() == 7 and RunException.objects.count() == 3
    assert len(set(Bill.objects.values_list("point_id", flat=True))) == 7
    assert set(run.partitions.values_list("attempt", flat=True)) == {2}
    # a partition found done is not redone
    done = run.partitions.first()
    assert services.process_partition(done.pk).attempt == 2


def test_audit_flags_and_risk_order(world):
    run = _run(world)
    flags = {b.point_id: set(b.flags) for b in Bill.objects.filter(run=run)}
    pts = world["points"]
    assert "zero_bill" in flags[pts["r0"].pk]
    assert "estimated" in flags[pts["est"].pk]
    assert "demand_over" in flags[pts["li"].pk]  # 1,200 kW > 1.05 × 1,000
    assert "large_bill" not in flags[pts["li"].pk]  # below the 2,000,000 default for large industry
    assert all("new_customer" in f for f in flags.values())  # first bills
    risk = dict(Bill.objects.filter(run=run).values_list("point_id", "risk"))
    assert risk[pts["est"].pk] > risk[pts["r450"].pk] and risk[pts["li"].pk] > risk[pts["r450"].pk]


def test_change_against_last_month_is_flagged_with_the_org_threshold(world):
    _run(world, Period.month(2026, 2))
    pts = world["points"]
    world["fake"].readings[pts["r100"].pk] = reading(pts["r100"].pk, "140")  # +40 %
    world["fake"].readings[pts["r380"].pk] = reading(pts["r380"].pk, "700")  # much more
    _run(world)
    assert "change_last_month" not in _bill(world, "r100").flags  # residential threshold 50 %
    assert "change_last_month" in _bill(world, "r380").flags
    assert "new_customer" not in _bill(world, "r100").flags
    # a county sets residential to 30 %: applies below it, from its date
    AuditRule.objects.create(
        org=world["utility"].counties[0],
        code="change_last_month",
        params={"residential_pct": "30"},
        effective_from=date(2026, 3, 1),
    )
    run = BillingRun.objects.filter(period_start=MARCH.start).get()
    for p in run.partitions.all():
        services.retry_partition(partition=p, actor=None, at=AT)
    assert "change_last_month" in _bill(world, "r100").flags


def test_run_audit_release_posts_the_ledger_and_freezes_the_bills(world, django_capture_on_commit_callbacks):
    run = _run(world)
    auditor = world["auditor"]
    clean = services.approve_clean(run=run, actor=auditor, at=AT)
    assert clean == 0  # every first bill is flagged
    ids = list(Bill.objects.filter(run=run).values_list("pk", flat=True))
    assert services.approve_bills(bill_ids=ids, actor=auditor, at=AT) == 7
    with pytest.raises(InvalidInput):
        services.approve_bills(bill_ids=ids[:1], actor=auditor, at=AT)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.release_run(run=run, actor=auditor, at=AT) == 7
    run.refresh_from_db()
    assert run.state == BillingRun.State.RELEASED and run.released_bills == 7
    fake = world["fake"]
    li = _bill(world, "li")
    charge = fake.charges[("billing.bill", li.pk)]
    assert charge["amount"] == Decimal("299492.00") and charge["document_no"] == li.number
    assert charge["due_date"] == date(2026, 4, 13)  # large industry: 10 days
    assert _bill(world, "r450").due_date == date(2026, 4, 23)  # residential: 20 days
    assert len(fake.notices) == 7
    r450 = _bill(world, "r450")
    assert "270.61" in next(n["body"] for n in fake.notices if n["source_id"] == r450.pk)
    with pytest.raises(InvalidInput):
        services.release_bill(bill_id=li.pk, actor=auditor, at=AT)
    # a rerun of the month never touches an issued bill
    snapshot = {b.pk: (b.amount, b.state) for b in Bill.objects.all()}
    world["fake"].readings[world["points"]["r450"].pk] = reading(world["points"]["r450"].pk, "999")
    for p in run.partitions.all():
        services.retry_partition(partition=p, actor=None, at=AT)
    assert {b.pk: (b.amount, b.state) for b in Bill.objects.all()} == snapshot
    assert run.partitions.get(key="B01").skipped_issued == 5


def test_return_and_auditor_correction(world):
    run = _run(world)
    auditor = world["auditor"]
    b = _bill(world, "r0")
    services.return_bill(bill=b, actor=auditor, at=AT, reason="零电量,请复抄")
    b.refresh_from_db()
    assert b.state == Bill.State.RETURNED
    est = services.recalculate_bill(
        bill=_bill(world, "est"), usage={"kwh": "450"}, actor=auditor, at=AT, reason="复核"
    )
    assert est.amount == Decimal("270.61") and "manual_correction" in est.flags
    assert [ln.code for ln in est.lines.all()] == ["energy.tier1", "energy.tier2", "energy.tier3"]
    # the returned bill is replaced by the partition's rerun
    world["fake"].readings[world["points"]["r0"].pk] = reading(world["points"]["r0"].pk, "30")
    services.retry_partition(partition=run.partitions.get(key="B01"), actor=None, at=AT)
    assert _bill(world, "r0").state == Bill.State.FLAGGED and _bill(world, "r0").amount == Decimal("16.41")


def test_tariff_change_inside_the_month_prorates_the_bill(world):
    world["fake"].versions.append(version(9, "RES", _res_2026(), date(2026, 3, 16)))
    run = _run(world)
    b = _bill(world, "r450")
    assert b.prorated and "tariff_change" in b.flags
    segs = b.full_trace["seg"]
    assert [(s["start"], s["end"], s["v"]) for s in segs] == [
        ("2026-03-01", "2026-03-16", 1),
        ("2026-03-16", "2026-04-01", 9),
    ]
    assert [s["kwh"] for s in segs] == ["217.7419", "232.2581"]  # 450 × 15/31, rest
    # the month's bands are shared: segment 2 starts where segment 1 ended
    lines = [(ln.segment, ln.code, ln.quantity) for ln in b.lines.all()]
    assert lines == [
        (0, "energy.tier1", Decimal("210.0000")),
        (0, "energy.tier2", Decimal("7.7419")),
        (1, "energy.tier2", Decimal("182.2581")),
        (1, "energy.tier3", Decimal("50.0000")),
    ]
    versions = services.run_versions(run.pk)
    results = calc.scalar_rate(b.full_trace, versions)
    assert b.amount == sum(r.total for _, r in results)


def test_correction_re_rates_the_whole_period(world):
    run = _run(world)
    auditor = world["auditor"]
    with pytest.raises(InvalidInput):  # only issued bills take a correction document
        services.request_correction(
            bill=_bill(world, "r0"), reason="reading_error", usage={"kwh": "1"}, actor=auditor, at=AT
        )
    services.approve_bills(
        bill_ids=list(Bill.objects.filter(run=run).values_list("pk", flat=True)), actor=auditor, at=AT
    )
    services.release_run(run=run, actor=auditor, at=AT)
    b = _bill(world, "r380")
    assert b.amount == Decimal("216.32")
    c = services.request_correction(
        bill=b, reason="reading_error", usage={"kwh": "420"}, actor=auditor, at=AT
    )
    assert c.kind == Correction.Kind.DEBIT and c.amount == Decimal("28.88")  # not 23.88 (DOMAIN §4.4)
    assert c.corrected_amount == Decimal("245.20")
    assert {ln["code"]: ln["amount"] for ln in c.lines} == {"energy.tier2": "11.94", "energy.tier3": "16.94"}
    with pytest.raises(InvalidInput):  # four eyes
        services.approve_correction(correction=c, actor=auditor, at=AT)
    services.approve_correction(correction=c, actor=world["utility"].users["manager"], at=AT)
    adj = world["fake"].adjustments[("billing.correction", c.pk)]
    assert adj["amount"] == Decimal("28.88") and adj["original_source_id"] == b.pk
    b.refresh_from_db()
    assert b.amount == Decimal("216.32") and b.state == Bill.State.ISSUED  # the original stays


def _res_2026():
    from billing_support import RESIDENTIAL_2026

    return RESIDENTIAL_2026
