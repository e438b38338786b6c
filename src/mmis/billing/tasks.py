"""Celery tasks of a billing run: one partition's calculation, one partition's audit stage. acks_late
+ reject on worker loss: a worker killed mid-partition leaves its transaction uncommitted and the
broker hands the task to another worker, which redoes the partition from scratch (idempotent)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="billing.run_partition", acks_late=True, reject_on_worker_lost=True)
def run_partition(partition_id: int) -> dict:
    from mmis.billing.services import process_partition

    p = process_partition(partition_id)
    return {"partition": p.pk, "state": p.state, "bills": p.bills, "exceptions": p.exceptions}


@shared_task(name="billing.audit_partition", acks_late=True, reject_on_worker_lost=True)
def audit_partition(partition_id: int, at: str) -> dict:
    from datetime import datetime

    from mmis.billing.models import RunPartition
    from mmis.billing.services import audit_partition as audit

    p = audit(partition=RunPartition.objects.get(pk=partition_id), at=datetime.fromisoformat(at))
    return {"partition": p.pk, "flagged": p.flagged}
