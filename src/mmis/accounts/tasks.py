"""Periodic jobs of collection (run by Celery beat; see CELERY_BEAT_SCHEDULE in settings)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone


@shared_task(name="accounts.daily_collection")
def daily_collection() -> dict:
    """Each morning: snapshot accrued late fees, take due dunning steps, estimate yesterday's
    prepaid use from daily frozen readings (remote cost control evaluates thresholds there)."""
    from mmis.accounts import collection

    now = timezone.now()
    today = timezone.localdate(now)
    return {
        "late_fees": collection.accrue_late_fees(on=today),
        "dunning": collection.run_dunning(on=today, at=now),
        "prepaid_estimates": collection.run_daily_estimates(day=today - timedelta(days=1), at=now),
    }


@shared_task(name="accounts.dispatch_notices")
def dispatch_notices() -> int:
    from mmis.accounts.notices import dispatch_queued

    return dispatch_queued()
