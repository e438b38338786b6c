"""Periodic jobs of meter reading (run by Celery beat; see CELERY_BEAT_SCHEDULE in settings)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="readings.daily")
def daily() -> dict:
    """Each morning: billing readings from the daily frozen values of AMI books whose reading day
    is today, then missing-reading exceptions for plans past their cut-off."""
    from mmis.readings import services

    now = timezone.now()
    today = timezone.localdate(now)
    return {
        "from_frozen": services.readings_from_frozen(on=today, at=now),
        "missing": services.flag_missing(on=today, at=now),
    }
