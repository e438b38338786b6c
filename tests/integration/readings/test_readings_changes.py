"""Metering changes and the VEE wiring against the database: file changes without a closed work
order, the metering work order (换表 / CT ratio) through the workflow engine, billing inputs split
at the change, and the seasonal baseline."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from mmis.assets import services as assets
from mmis.common.periods import Period
from mmis.customers import services as cs
from mmis.readings import queries, workorders
from mmis.readings import services as rs
from mmis.readings.models import MeterChange, MeterReading, ReadingException
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessInstance, Task

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def at(d: date) -> datetime:
    return datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)


def read(point, d, total, **kw):
    return rs.record_reading(
        actor=None, point=point, reading_date=d, values={"total": str(total), **kw}, at=at(d)
    )


def valid_history(point, rows):
    """Billable readings stored as they are (no VEE), e.g. a year of history."""
    meter = rs.current_meter(point.pk)
    point.refresh_from_db()
    MeterReading.objects.bulk_create(
        [
            MeterReading(
                org_id=point.org_id,
                metering_point=point,
                meter=meter,
                reading_date=d,
                total=D(str(t)),
                multiplier=point.multiplier,
                source="manual",
                status="valid",
                entered_at=at(d),
            )
            for d, t in rows
        ]
    )


def open_exceptions(reading):
    return list(ReadingException.objects.filter(reading=reading, state="open").values_list("rule", "detail"))


def test_multiplier_changed_in_the_file_alone_holds_the_next_reading(world, rf):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    cs.set_multiplier(actor=None, point=p, multiplier=D(2), reason="档案录入更正")
    r = read(p, date(2026, 1, 25), 1300)
    assert r.status == "exception" and r.multiplier == D(2)
    assert open_exceptions(r) == [("file_change", "档案变更未闭环: 综合倍率 1 → 2 无变更工单")]
    inputs = queries.billing_inputs(point_ids=[p.pk], period=Period(date(2026, 1, 1), date(2026, 2, 1)))
    assert inputs[p.pk].reason == "exception"


def test_meter_swapped_in_the_asset_register_alone_holds_the_next_reading(world, rf):
    p, old = world.points[0], world.meters[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    assets.remove(actor=None, meter=old, on=date(2026, 1, 10))
    new = assets.register_meter(actor=None, org=p.org, asset_no="MNEW0001", kind="single_phase")
    assets.install(actor=None, point=p, meter=new, transformers=[], on=date(2026, 1, 10))
    r = read(p, date(2026, 1, 25), 50)
    assert r.meter_id == new.pk
    # energy across two meters is not computed (no reverse/jump noise): only the file change
    assert open_exceptions(r) == [("file_change", "档案变更未闭环: 电能表 M00000001 → MNEW0001 无换表工单")]


@pytest.fixture
def metering_order(world):
    """The metering work order published for the province, and a helper driving it."""
    u = world.utility
    workorders.install_definitions(actor=None, province=u.province, at=AT, effective_from=date(2025, 1, 1))

    def run(point, form, *, archive=True, when=AT):
        order = workorders.open_meter_change(actor=world.auditor, point=point, reason="fault", at=when)
        task = Task.objects.get(instance=order, step_code="field")
        wf.claim_task(actor=world.reader, task_id=task.pk, at=when)
        wf.complete_task(actor=world.reader, task_id=task.pk, form=form, at=when)
        if archive:
            finish(order, when)
        order.refresh_from_db()
        return order

    def finish(order, when=AT):
        task = Task.objects.get(instance=order, step_code="archive")
        wf.claim_task(actor=world.auditor, task_id=task.pk, at=when)
        wf.complete_task(actor=world.auditor, task_id=task.pk, form={}, at=when)
        order.refresh_from_db()

    run.finish = finish
    return run


def test_meter_replaced_by_a_work_order_is_billed_in_two_parts(world, rf, metering_order):
    p, old = world.points[0], world.meters[0]
    rf.seed_history(world, p, [1000, 1100, 1200])  # Oct, Nov, Dec 25
    new = assets.register_meter(actor=None, org=p.org, asset_no="MNEW0002", kind="single_phase")
    order = metering_order(
        p,
        {
            "done_on": "2026-01-10",
            "old_total": "1250.50",
            "new_meter_asset_no": "MNEW0002",
            "new_total": "0.5",
        },
        archive=False,
    )
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.state, new.state, new.metering_point_id) == ("removed", "installed", p.pk)
    mc = MeterChange.objects.get(metering_point=p)
    assert (mc.old_meter_id, mc.new_meter_id, mc.work_order_id) == (old.pk, new.pk, order.pk)
    assert mc.old_final == {"total": "1250.50"} and mc.new_initial == {"total": "0.5"}
    assert order.data["meter_asset_no"] == "MNEW0002"
    # read before the order is archived: held
    r = read(p, date(2026, 1, 25), "60.50")
    assert [rule for rule, _ in open_exceptions(r)] == ["file_change"]
    assert f"工单 {order.number} 未归档" in open_exceptions(r)[0][1]
    metering_order.finish(order)
    assert order.state == ProcessInstance.State.COMPLETED
    # archiving validated the held reading again: it passes now
    r.refresh_from_db()
    assert r.status == "valid"
    exc = ReadingException.objects.get(reading=r)
    assert (exc.state, exc.decision, exc.decided_by) == ("closed", "revalidate", None)
    bi = queries.billing_inputs(point_ids=[p.pk], period=Period(date(2026, 1, 1), date(2026, 2, 1)))[p.pk]
    # (1250.50 − 1200) × 1 + (60.50 − 0.50) × 1 = 110.5 kWh
    assert bi.billable and bi.kwh == D("110.50") and bi.meter_changed and not bi.multiplier_changed
    assert [(s.meter_id, s.kwh, s.basis) for s in bi.segments] == [
        (old.pk, D("50.50"), "registers"),
        (new.pk, D("60.00"), "registers"),
    ]
    # the next month on the new meter alone is an ordinary period
    nxt = read(p, date(2026, 2, 25), "150.50")
    assert nxt.status == "valid"
    bi2 = queries.billing_inputs(point_ids=[p.pk], period=Period(date(2026, 2, 1), date(2026, 3, 1)))[p.pk]
    assert bi2.kwh == D("90.00") and bi2.segments == () and not bi2.meter_changed


def test_ct_ratio_changed_by_a_work_order_splits_at_the_reading(world, rf, metering_order):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    assets.register_transformer(
        actor=None, org=p.org, asset_no="CT200", kind="ct", primary=D(200), secondary=D(5)
    )
    metering_order(p, {"done_on": "2026-01-10", "old_total": "1210", "ct_asset_no": "CT200"})
    p.refresh_from_db()
    assert p.multiplier == D(40)
    r = read(p, date(2026, 1, 25), "1212.50")
    assert r.status == "valid", open_exceptions(r)
    bi = queries.billing_inputs(point_ids=[p.pk], period=Period(date(2026, 1, 1), date(2026, 2, 1)))[p.pk]
    # (1210 − 1200) × 1 + (1212.50 − 1210) × 40 = 10 + 100
    assert bi.kwh == D("110.00") and bi.multiplier == D(40) and bi.multiplier_changed
    assert [(s.multiplier, s.kwh) for s in bi.segments] == [(D(1), D("10.00")), (D(40), D("100.00"))]


def test_recorded_multiplier_change_without_a_reading_uses_frozen_registers_else_days(world, rf):
    from mmis.readings.models import DailyFrozenReading

    p, q = world.points[0], world.points[2]
    for point in (p, q):
        valid_history(point, [(date(2026, 1, 1), 1000)])
        cs.set_multiplier(actor=None, point=point, multiplier=D(3), reason="CT")
        rs.record_meter_change(
            actor=None,
            point=point,
            changed_on=date(2026, 1, 11),
            old_meter=rs.current_meter(point.pk),
            new_meter=rs.current_meter(point.pk),
            old_multiplier=D(1),
            new_multiplier=D(3),
            old_final=None,
            new_initial=None,
            at=AT,
        )
    DailyFrozenReading.objects.create(
        meter=world.meters[0], metering_point=p, day=date(2026, 1, 11), total=D("1100"), received_at=AT
    )
    for point in (p, q):
        r = read(point, date(2026, 1, 31), 1300)
        assert "无工单" in open_exceptions(r)[0][1]  # recorded, but by no work order
        rs.decide_exception(
            actor=world.auditor, exception=ReadingException.objects.get(reading=r), decision="accept", at=AT
        )
    bi = queries.billing_inputs(point_ids=[p.pk, q.pk], period=Period(date(2026, 1, 1), date(2026, 2, 1)))
    # by the frozen registers of Jan 11: 100 × 1 + 200 × 3
    assert bi[p.pk].kwh == D(700) and [s.basis for s in bi[p.pk].segments] == ["registers"] * 2
    # no frozen registers: 300 shared by days, 10 days × 1 and 20 days × 3 → 100 + 600
    assert bi[q.pk].kwh == D(700) and [s.basis for s in bi[q.pk].segments] == ["pro_rata_days"] * 2


def test_a_change_inside_a_billed_period_is_refused(world, rf):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    with pytest.raises(rs.UnableToRecordMeterChange, match="correct that reading"):
        rs.record_meter_change(
            actor=None,
            point=p,
            changed_on=date(2025, 11, 1),
            old_meter=world.meters[0],
            new_meter=world.meters[0],
            old_multiplier=D(1),
            new_multiplier=D(2),
            old_final=None,
            new_initial=None,
            at=AT,
        )
    with pytest.raises(rs.UnableToRecordMeterChange) as exc:
        rs.record_meter_change(
            actor=None,
            point=p,
            changed_on=date(2026, 1, 1),
            old_meter=world.meters[0],
            new_meter=world.meters[1],
            old_multiplier=D(1),
            new_multiplier=D(1),
            old_final={"total": "-1"},
            new_initial=None,
            at=AT,
        )
    assert {e.path for e in exc.value.errors} >= {"old_final.total", "new_initial.total"}
    assert not MeterChange.objects.exists()


# --- seasonal baseline ------------------------------------------------------------------------
SEASON = [
    (date(2025, 6, 25), 1000),
    (date(2025, 7, 25), 1900),  # last July: 900 kWh in 30 days
    *[(date(2025, m, 25), 1900 + 300 * (m - 7)) for m in range(8, 13)],
    *[(date(2026, m, 25), 3400 + 300 * m) for m in range(1, 4)],  # … to 4300 on 2026-03-25
    (date(2026, 4, 25), 4570),  # 270 (31 days)
    (date(2026, 5, 25), 4870),  # 300 (30 days)
    (date(2026, 6, 25), 5200),  # 330 (31 days): 900 kWh in 92 days
]


def test_seasonal_users_are_compared_with_the_same_month_last_year(world, rf):
    plain = world.points[0]
    farm, _ = rf.add_point(world.utility, world.utility.customers["a"], n=50, category="agricultural")
    for point in (plain, farm):
        valid_history(point, SEASON)
    july_plain = read(plain, date(2026, 7, 25), 6700)  # 1,500 kWh: 50/day
    july_farm = read(farm, date(2026, 7, 25), 6700)
    assert [r for r, _ in open_exceptions(july_plain)] == ["jump"]
    assert july_farm.status == "valid"
    # an org that declares no seasonal categories treats the farm like anyone else
    rs.set_thresholds(actor=None, org=world.utility.province, values={"seasonal_categories": []}, at=AT)
    aug = read(farm, date(2026, 8, 25), 8400)  # 1,700 in 31 days vs last August 300/31
    assert "近3期日均" in open_exceptions(aug)[0][1]


def test_seasonal_estimate_uses_the_same_period_last_year(world, rf):
    plain = world.points[0]
    farm, _ = rf.add_point(world.utility, world.utility.customers["a"], n=51, category="agricultural")
    for point in (plain, farm):
        valid_history(point, SEASON)
    e_plain = rs.estimate_reading(actor=None, point=plain, reading_date=date(2026, 7, 25), at=AT)
    e_farm = rs.estimate_reading(actor=None, point=farm, reading_date=date(2026, 7, 25), at=AT)
    # DOMAIN.md §2.4: 900 kWh / 92 days × 30 = 293.48 → 293; seasonal: 900 / 30 × 30 = 900
    assert e_plain.total == D("5493.00") and "近3期日均" in e_plain.note
    assert e_farm.total == D("6100.00") and "去年同期日均" in e_farm.note
