"""File change (DOMAIN.md §2.3) for the tariff code: a point's tariff changed in the customer file
(its history) inside a reading period holds the period's reading unless the work order that
changed it (改类: its data names the customer, the point and the new tariff code) is archived."""

from datetime import UTC, date, datetime, timedelta

import pytest

from mmis.customers.models import MeteringPoint
from mmis.readings import services as rs
from mmis.readings.models import ReadingException
from mmis.workflow import services as wf
from mmis.workflow.models import Task

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 9, 9, 0, tzinfo=UTC)
CHANGED_AT = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)

SPEC = {
    "start": "change",
    "start_form": [
        {"name": "customer_no", "label": "户号", "type": "text", "required": True},
        {"name": "point_no", "label": "计量点编号", "type": "text", "required": False},
        {"name": "new_tariff_code", "label": "新电价码", "type": "text", "required": False},
    ],
    "steps": [
        {
            "code": "change",
            "name": "改类实施",
            "role": "billing_auditor",
            "org_level": "county",
            "next": [{"to": "archive"}],
        },
        {"code": "archive", "name": "资料归档", "role": "billing_auditor", "org_level": "county", "next": []},
    ],
}


def change_tariff(point, code, *, when=CHANGED_AT):
    """Change the tariff code in the file (a history row dated `when`)."""
    point.refresh_from_db()
    point.tariff_code = code
    point._change_reason = "改类"
    point.save()
    h = MeteringPoint.history.filter(id=point.pk).order_by("-history_id").first()
    MeteringPoint.history.filter(history_id=h.history_id).update(history_date=when)


def read(point, d, total):
    return rs.record_reading(
        actor=None,
        point=point,
        reading_date=d,
        values={"total": str(total)},
        at=datetime.combine(d, datetime.min.time(), tzinfo=UTC) + timedelta(hours=10),
    )


def held(reading):
    return list(ReadingException.objects.filter(reading=reading, state="open").values_list("rule", "detail"))


@pytest.fixture
def order(world):
    u = world.utility
    wf.publish_definition(
        actor=None,
        org=u.province,
        code="category_change_t",
        name="改类",
        spec=SPEC,
        effective_from=date(2025, 1, 1),
        at=AT,
        number_prefix="GL",
    )

    def start(point, code, *, point_no=None):
        data = {"customer_no": point.customer.customer_no, "new_tariff_code": code}
        if point_no is not None:
            data["point_no"] = point_no
        return wf.start_process(
            actor=world.auditor, code="category_change_t", org=point.org, title="改类", data=data, at=AT
        )

    def step(instance, code):
        task = Task.objects.get(instance=instance, step_code=code)
        wf.claim_task(actor=world.auditor, task_id=task.pk, at=AT)
        wf.complete_task(actor=world.auditor, task_id=task.pk, form={}, at=AT)

    start.step = step
    return start


def test_tariff_changed_in_the_file_alone_holds_the_reading(world, rf):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])  # Oct, Nov, Dec 25
    old = MeteringPoint.objects.get(pk=p.pk).tariff_code
    change_tariff(p, "COM-FLAT")
    r = read(p, date(2026, 1, 25), 1300)
    assert r.status == "exception"
    assert held(r) == [("file_change", f"档案变更未闭环: 2026-01-10 电价码 {old or '—'} → COM-FLAT 无工单")]
    # the next period does not hold the change again
    rs.decide_exception(
        actor=world.auditor, exception=ReadingException.objects.get(reading=r), decision="accept", at=AT
    )
    assert read(p, date(2026, 2, 25), 1400).status == "valid"


def test_tariff_changed_by_a_work_order_holds_until_it_is_archived(world, rf, order):
    p, q = world.points[0], world.points[2]
    rf.seed_history(world, p, [1000, 1100, 1200])
    rf.seed_history(world, q, [500, 600, 700])
    wo = order(p, "COM-FLAT", point_no=p.point_no)
    change_tariff(p, "COM-FLAT")
    r = read(p, date(2026, 1, 25), 1300)
    assert held(r) and "电价码" in held(r)[0][1] and f"工单 {wo.number} 未归档" in held(r)[0][1]
    # an order for another point of the customer does not explain this one
    order(q, "COM-TOU", point_no=p.point_no)
    change_tariff(q, "COM-TOU")
    rq = read(q, date(2026, 1, 25), 800)
    assert "无工单" in held(rq)[0][1]
    # archived (its archive step done): the change is explained
    order.step(wo, "change")
    order.step(wo, "archive")
    p2 = world.points[1]
    rf.seed_history(world, p2, [10, 20, 30], tou=True)
    wo2 = order(p2, "RES-TOU", point_no=p2.point_no)
    order.step(wo2, "change")
    order.step(wo2, "archive")
    change_tariff(p2, "RES-TOU")
    r2 = rs.record_reading(
        actor=None,
        point=p2,
        reading_date=date(2026, 1, 25),
        values={"total": "40", "sharp": "10", "peak": "10", "flat": "10", "valley": "10"},
        at=datetime(2026, 1, 25, 10, tzinfo=UTC),
    )
    assert r2.status == "valid", held(r2)


def test_an_order_without_a_point_names_the_main_point(world, rf, order):
    p = world.points[0]
    rf.seed_history(world, p, [1000, 1100, 1200])
    wo = order(p, "COM-FLAT")  # no point_no: the customer's main point
    order.step(wo, "change")
    order.step(wo, "archive")
    change_tariff(p, "COM-FLAT")
    assert read(p, date(2026, 1, 25), 1300).status == "valid"
