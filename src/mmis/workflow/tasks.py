"""Celery tasks of the engine: the deadline check run by beat (every few minutes)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="workflow.check_deadlines")
def check_deadlines_task() -> dict[str, int]:
    from mmis.workflow.services import check_deadlines

    return check_deadlines(now=timezone.now())
