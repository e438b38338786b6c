"""The exceptions queue: owners (book auditor, org default, nearest auditor), deadlines in working
days on the province calendar, overdue, hand-over, and the site-check work order through the
workflow engine and the inspection app."""

from datetime import UTC, date, datetime

import pytest

from mmis.inspection import services as inspection
from mmis.org import services as org_services
from mmis.org.models import AuditLog
from mmis.readings import queries
from mmis.readings import services as rs
from mmis.readings.models import MeterReading, ReadingException
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessInstance, Task

pytestmark = pytest.mark.django_db
FRI = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # Friday 17:00 in Beijing


def held(world, point, d=date(2026, 3, 25), at=FRI):
    """A reading with a meter event: held with one meter_fault exception."""
    r = rs.record_reading(
        actor=None, point=point, reading_date=d, values={"total": "10"}, fault_flags=["voltage_loss"], at=at
    )
    return r, ReadingException.objects.get(reading=r)


def test_owner_is_the_nearest_auditor_and_deadline_is_three_working_days(world):
    _, e = held(world, world.points[0])
    # no auditor on the book or in the settings: the billing auditor of the county above the station
    assert e.owner == world.auditor
    # Friday + 3 working days: Mon 30, Tue 31, Wed 1 April
    assert e.due_on == date(2026, 4, 1)


def test_book_auditor_then_org_default_then_province_calendar(world):
    u = world.utility
    other = org_services.create_user(
        username="auditor_b", password="Mmis@2026-test", org=u.counties[0], roles=["billing_auditor"]
    )
    book_auditor = org_services.create_user(
        username="auditor_c", password="Mmis@2026-test", org=u.stations[0], roles=["billing_auditor"]
    )
    rs.set_thresholds(actor=None, org=u.counties[0], values={"auditor": other, "exception_days": 5}, at=FRI)
    wf.set_calendar_day(actor=u.users["admin"], province=u.province, day=date(2026, 3, 30), is_workday=False)
    _, e = held(world, world.points[0])
    # Mon 30 is a provincial holiday: Tue 31, Wed 1, Thu 2, Fri 3 (4–6 April is Qingming), Tue 7
    assert (e.owner, e.due_on) == (other, date(2026, 4, 7))
    rs.update_book(actor=None, book=world.book, changes={"auditor": book_auditor}, at=FRI)
    _, e2 = held(world, world.points[1])
    assert e2.owner == book_auditor
    with pytest.raises(rs.UnableToManageBook, match="not a billing auditor"):
        rs.update_book(actor=None, book=world.book, changes={"auditor": world.reader}, at=FRI)
    with pytest.raises(rs.InvalidInput, match="billing auditor role"):
        rs.set_thresholds(actor=None, org=u.counties[0], values={"auditor": world.reader}, at=FRI)


def test_missing_and_not_read_exceptions_get_owners_too(world):
    e = rs.mark_not_read(
        actor=None, point=world.points[0], reading_date=date(2026, 3, 25), reason="no_access", at=FRI
    )
    assert e.owner == world.auditor and e.due_on == date(2026, 4, 1)
    rs.generate_plans(actor=None, month=date(2026, 3, 1), books=[world.book], at=FRI)
    rs.flag_missing(on=date(2026, 3, 30), at=FRI)
    missing = ReadingException.objects.filter(rule="missing")
    assert missing.count() == 3 and {m.owner for m in missing} == {world.auditor}


def test_queue_filters_overdue_and_mine_and_hand_over_is_audited(world):
    u = world.utility
    _, e = held(world, world.points[0])
    _, late = held(world, world.points[1], at=datetime(2026, 3, 2, 2, 0, tzinfo=UTC))
    assert late.due_on == date(2026, 3, 5)
    overdue = queries.exceptions(world.auditor, overdue_on=date(2026, 3, 27))
    assert list(overdue) == [late]
    assert queries.overdue_count(world.auditor, today=date(2026, 3, 27)) == 1
    other = org_services.create_user(
        username="auditor_b", password="Mmis@2026-test", org=u.counties[0], roles=["billing_auditor"]
    )
    rs.assign_exception(actor=world.auditor, exception=late, owner=other, at=FRI)
    assert list(queries.exceptions(world.auditor, owner=other)) == [late]
    assert list(queries.exceptions(world.auditor, owner=world.auditor)) == [e]
    log = AuditLog.objects.get(action="reading_exception.assign")
    assert (log.before, log.after) == ({"owner": "李核算"}, {"owner": "auditor_b"})
    outsider = org_services.create_user(
        username="auditor_x", password="Mmis@2026-test", org=u.counties[1], roles=["billing_auditor"]
    )
    with pytest.raises(rs.UnableToDecide, match="cannot see"):
        rs.assign_exception(actor=world.auditor, exception=late, owner=outsider, at=FRI)
    with pytest.raises(rs.UnableToDecide, match="not an active billing auditor"):
        rs.assign_exception(actor=world.auditor, exception=late, owner=world.reader, at=FRI)


@pytest.fixture
def inspector(world):
    u = world.utility
    inspection.install_definitions(actor=None, province=u.province, at=FRI, effective_from=date(2025, 1, 1))
    return org_services.create_user(
        username="inspector_a", password="Mmis@2026-test", org=u.stations[0], roles=["inspector"]
    )


def site_check(world, e, inspector, form):
    rs.decide_exception(actor=world.auditor, exception=e, decision="site_check", note="请核对表码", at=FRI)
    e.refresh_from_db()
    task = Task.objects.get(instance=e.work_order, step_code="check")
    wf.claim_task(actor=inspector, task_id=task.pk, at=FRI)
    wf.complete_task(actor=inspector, task_id=task.pk, form=form, at=FRI)
    e.refresh_from_db()
    return e


def test_site_check_opens_a_work_order_and_a_confirmed_reading_is_accepted(world, inspector):
    r, e = held(world, world.points[0])
    rs.decide_exception(actor=world.auditor, exception=e, decision="site_check", note="请核对表码", at=FRI)
    e.refresh_from_db()
    order = e.work_order
    assert order.definition.code == "site_check" and order.state == ProcessInstance.State.RUNNING
    assert order.data["exception_id"] == e.pk and order.subject_type == "readings.readingexception"
    task = Task.objects.get(instance=order, step_code="check")
    assert (task.role, task.org) == ("inspector", world.utility.stations[0])
    r.refresh_from_db()
    assert r.status == "exception"  # held until the field answers
    log = AuditLog.objects.get(action="reading_exception.site_check")
    assert log.after["work_order"] == order.number and log.reason == "请核对表码"
    wf.claim_task(actor=inspector, task_id=task.pk, at=FRI)
    wf.complete_task(
        actor=inspector, task_id=task.pk, form={"result": "confirmed", "findings": "表码无误"}, at=FRI
    )
    e.refresh_from_db()
    r.refresh_from_db()
    order.refresh_from_db()
    assert (e.check_result, r.status, order.state) == ("confirmed", "accepted", "completed")


def test_site_check_finding_a_wrong_reading_corrects_it(world, rf, inspector):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    r = rs.record_reading(
        actor=None, point=p, reading_date=date(2026, 1, 25), values={"total": "1900"}, at=FRI
    )
    e = ReadingException.objects.get(reading=r, rule="jump")
    site_check(world, e, inspector, {"result": "wrong_reading", "actual_total": "1290", "findings": "误抄"})
    r.refresh_from_db()
    assert (r.total, r.status) == (1290, "valid")


def test_site_check_fault_opens_a_follow_up_for_the_owner(world, inspector):
    r, e = held(world, world.points[0])
    e = site_check(world, e, inspector, {"result": "meter_fault", "findings": "表计烧坏"})
    follow = ReadingException.objects.get(rule="site_check")
    assert follow.state == "open" and follow.owner == world.auditor and follow.due_on is not None
    assert e.work_order.number in follow.detail and "表计烧坏" in follow.detail
    assert MeterReading.objects.get(pk=r.pk).status == "exception"
    # the auditor may now accept the reading (the site check has answered)
    rs.decide_exception(actor=world.auditor, exception=follow, decision="accept", note="已换表", at=FRI)
    assert MeterReading.objects.get(pk=r.pk).status == "accepted"


def test_site_check_without_a_published_process_is_refused_and_changes_nothing(world):
    _, e = held(world, world.points[0])
    with pytest.raises(rs.InvalidInput, match="no site-check process is published"):
        rs.decide_exception(actor=world.auditor, exception=e, decision="site_check", note="核查", at=FRI)
    e.refresh_from_db()
    assert (e.state, e.decision, e.work_order_id) == ("open", "", None)
    assert not ProcessInstance.objects.exists()
