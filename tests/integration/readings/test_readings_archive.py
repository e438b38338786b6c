"""Archiving a metering work order validates again the readings the file-change rule held because
the order was not archived yet: they pass, or are flagged again for what still fails (with the
owner and deadline they had), audited as a system action."""

from datetime import UTC, date, datetime, timedelta

import pytest

from mmis.assets import services as assets
from mmis.org.models import AuditLog
from mmis.readings import services as rs
from mmis.readings import workorders
from mmis.readings.models import MeterReading, ReadingException
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessInstance, Task

pytestmark = pytest.mark.django_db
AT = datetime(2026, 3, 26, 9, 0, tzinfo=UTC)


def at(d: date) -> datetime:
    return datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10)


def read(point, d, total):
    return rs.record_reading(actor=None, point=point, reading_date=d, values={"total": str(total)}, at=at(d))


def open_rules(reading):
    return sorted(
        ReadingException.objects.filter(reading=reading, state="open").values_list("rule", flat=True)
    )


@pytest.fixture
def swap(world):
    """A meter swap on a point by the metering work order, left at its archive step."""
    workorders.install_definitions(
        actor=None, province=world.utility.province, at=AT, effective_from=date(2025, 1, 1)
    )

    def run(point, new_asset_no, *, old_total, new_total="0.5", done_on="2026-01-10"):
        assets.register_meter(actor=None, org=point.org, asset_no=new_asset_no, kind="single_phase")
        order = workorders.open_meter_change(actor=world.auditor, point=point, reason="fault", at=AT)
        task = Task.objects.get(instance=order, step_code="field")
        wf.claim_task(actor=world.reader, task_id=task.pk, at=AT)
        form = {
            "done_on": done_on,
            "old_total": old_total,
            "new_meter_asset_no": new_asset_no,
            "new_total": new_total,
        }
        wf.complete_task(actor=world.reader, task_id=task.pk, form=form, at=AT)
        return order

    def archive(order, when=AT):
        task = Task.objects.get(instance=order, step_code="archive")
        wf.claim_task(actor=world.auditor, task_id=task.pk, at=when)
        wf.complete_task(actor=world.auditor, task_id=task.pk, form={}, at=when)
        order.refresh_from_db()

    run.archive = archive
    return run


def test_archiving_the_order_releases_the_held_reading(world, rf, swap):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    order = swap(p, "MNEW0101", old_total="1250.50")
    r = read(p, date(2026, 1, 25), "60.50")
    assert open_rules(r) == ["file_change"]
    later = AT + timedelta(days=1)
    swap.archive(order, when=later)
    assert order.state == ProcessInstance.State.COMPLETED
    r.refresh_from_db()
    assert r.status == MeterReading.Status.VALID and open_rules(r) == []
    closed = ReadingException.objects.get(reading=r)
    assert (closed.state, closed.decision, closed.decided_by, closed.decided_at) == (
        "closed",
        "revalidate",
        None,
        later,
    )
    assert order.number in closed.decision_note
    log = AuditLog.objects.get(action="reading.revalidate", target_id=str(r.pk))
    assert log.actor is None and log.actor_name == "system"
    assert log.before == {"status": "exception", "open": ["file_change"]}
    assert log.after == {"status": "valid", "open": [], "work_order": order.number}
    assert order.data["revalidated"] == 1 and order.data["revalidated_valid"] == 1


def test_a_reading_that_still_fails_is_flagged_again_keeping_its_owner(world, rf, swap):
    from mmis.org import services as org_services
    from mmis_testing import PASSWORD

    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])  # 100 kWh a month
    order = swap(p, "MNEW0102", old_total="1250")
    r = read(p, date(2026, 1, 25), "900.5")  # 50 + 900 kWh: a jump besides the open order
    assert open_rules(r) == ["file_change", "jump"]
    colleague = org_services.create_user(
        username="auditor_b", password=PASSWORD, org=world.utility.counties[0], roles=["billing_auditor"]
    )
    jump = ReadingException.objects.get(reading=r, rule="jump", state="open")
    rs.assign_exception(actor=world.auditor, exception=jump, owner=colleague, at=AT)
    due = jump.due_on
    swap.archive(order, when=AT + timedelta(days=2))
    r.refresh_from_db()
    assert r.status == MeterReading.Status.EXCEPTION and open_rules(r) == [
        "jump"
    ]  # the order is no longer the reason
    again = ReadingException.objects.get(reading=r, state="open")
    assert again.pk != jump.pk and (again.owner, again.due_on) == (colleague, due)
    assert "电量突增" in again.get_rule_display()
    log = AuditLog.objects.get(action="reading.revalidate", target_id=str(r.pk))
    assert log.before["open"] == ["file_change", "jump"] and log.after["open"] == ["jump"]


def test_readings_sent_back_or_of_other_points_are_left_alone(world, rf, swap):
    from decimal import Decimal as D

    from mmis.customers import services as cs

    p, q = world.points[0], world.points[2]
    rf.seed_history(world, p, [1000, 1100, 1200])
    order = swap(p, "MNEW0103", old_total="1250")
    r = read(p, date(2026, 1, 25), "900.5")
    assert open_rules(r) == ["file_change", "jump"]
    jump = ReadingException.objects.get(reading=r, rule="jump")
    rs.decide_exception(actor=world.auditor, exception=jump, decision="reread", note="照片看不清", at=AT)
    # another point held for a file change of its own (multiplier changed in the file alone)
    rf.seed_history(world, q, [500, 600, 700])
    cs.set_multiplier(actor=None, point=q, multiplier=D(2), reason="档案录入")
    rq = read(q, date(2026, 1, 25), 800)
    assert open_rules(rq) == ["file_change"]
    swap.archive(order)
    r.refresh_from_db()
    rq.refresh_from_db()
    # the reader was sent to read p again: the re-read is validated, not this one
    assert r.status == "exception" and open_rules(r) == ["file_change"]
    assert rq.status == "exception" and open_rules(rq) == ["file_change"]
    assert not AuditLog.objects.filter(action="reading.revalidate").exists()
    assert order.data["revalidated"] == 0


def test_auditors_cannot_choose_the_system_decision(world, rf):
    rs.mark_not_read(
        actor=None, point=world.points[0], reading_date=date(2026, 1, 25), reason="no_access", at=AT
    )
    exc = ReadingException.objects.get()
    with pytest.raises(rs.UnableToDecide) as e:
        rs.decide_exception(actor=world.auditor, exception=exc, decision="revalidate", at=AT)
    assert e.value.errors[0].path == "decision"
    exc.refresh_from_db()
    assert exc.state == "open"
