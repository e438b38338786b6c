"""The demo's readings step: a year of readings with the multiplier of each point, and an
exceptions queue waiting with owners and deadlines (some overdue), the site-check and metering
work orders published."""

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_demo_readings_leave_a_queue_with_owners_and_deadlines():
    from mmis.cli.demo import DemoContext, build
    from mmis.cli.demo.builder import STEPS
    from mmis.readings.models import MeterReading, ReadingException
    from mmis.workflow.models import ProcessDefinition

    steps = [s for s in STEPS if s.name in ("orgs", "users", "customers", "readings")]
    ctx = build(DemoContext(customers=400, seed=3, progress=False, log=lambda _m: None), steps)
    auditor = ctx.users["auditor"]
    queue = list(ReadingException.objects.filter(state="open"))
    assert queue and all(e.due_on is not None and e.due_on >= e.created_at.date() for e in queue)
    today = timezone.localdate()
    assert any(e.due_on < today for e in queue) and any(e.due_on >= today for e in queue)
    mine = [e for e in queue if e.owner_id == auditor.pk]
    assert mine and all(e.org.path.startswith(auditor.org.path) for e in mine)
    assert not MeterReading.objects.filter(multiplier__isnull=True).exists()
    assert set(ProcessDefinition.objects.values_list("code", flat=True)) >= {"site_check", "meter_change"}
