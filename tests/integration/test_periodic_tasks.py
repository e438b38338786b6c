"""The periodic jobs of the beat schedule exist and run (eagerly, no broker) on a small utility."""

import pytest
from django.conf import settings

from mmis.celery import app

pytestmark = pytest.mark.django_db


def test_every_scheduled_task_is_registered():
    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_daily_jobs_run_on_an_empty_day(utility):
    from mmis.accounts.tasks import daily_collection, dispatch_notices
    from mmis.readings.tasks import daily
    from mmis.workflow.tasks import check_deadlines_task

    assert daily.delay().get() == {"from_frozen": 0, "missing": 0}
    result = daily_collection.delay().get()
    assert set(result) == {"late_fees", "dunning", "prepaid_estimates"}
    assert dispatch_notices.delay().get() == 0
    assert isinstance(check_deadlines_task.delay().get(), dict)
