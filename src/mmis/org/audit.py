"""The audit trail: every service that changes data calls `record` inside its transaction."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils import timezone

from mmis.org.models import AuditLog, Org, User

SENSITIVE_FIELDS = {"id_number_enc", "phone_enc", "bank_account_enc", "password"}


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, bytes | memoryview):
        return "<encrypted>"
    return value


def snapshot(instance: models.Model, fields: list[str] | None = None) -> dict[str, Any]:
    """Field values of a row for the before/after columns; secrets are never copied in clear."""
    out: dict[str, Any] = {}
    for f in instance._meta.concrete_fields:
        if fields is not None and f.name not in fields:
            continue
        if f.name in SENSITIVE_FIELDS:
            continue
        out[f.attname] = jsonable(getattr(instance, f.attname))
    return out


BOOKKEEPING_FIELDS = {"updated_at", "created_at"}


def diff(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    keys = [k for k in after if before.get(k) != after.get(k) and k not in BOOKKEEPING_FIELDS]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def record(
    *,
    actor: User | None,
    action: str,
    target: models.Model | None = None,
    target_type: str = "",
    target_id: str = "",
    org: Org | None = None,
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> AuditLog:
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        org_id = target.org_id if org is None and hasattr(target, "org_id") else (org.pk if org else None)
    else:
        org_id = org.pk if org else None
    return AuditLog.objects.create(
        at=at or timezone.now(),
        actor=actor if actor is not None and actor.pk else None,
        actor_name=(str(actor) if actor is not None else "system")[:150],
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_repr=(str(target) if target is not None else "")[:200],
        org_id=org_id,
        before=jsonable(before) if before is not None else None,
        after=jsonable(after) if after is not None else None,
        reason=reason[:200],
    )
