"""Change history of the customer file: a timeline, and the whole file as it was at a moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mmis.customers.models import Customer

HISTORY_LABELS = {"+": "新建", "~": "修改", "-": "删除"}
SKIP_FIELDS = {
    "id",
    "history_id",
    "history_date",
    "history_change_reason",
    "history_type",
    "history_user",
    "history_user_id",
    "id_number_enc",
    "phone_enc",
    "bank_account_enc",
    "id_number_index",
    "phone_index",
    "updated_at",
    "created_at",
}


@dataclass
class TimelineEntry:
    at: datetime
    what: str  # model verbose name
    label: str  # the row
    kind: str  # 新建 / 修改 / 删除
    user: str
    reason: str
    changes: list[tuple[str, Any, Any]]  # (field verbose name, old, new)


def _entries_for(history_qs, what: str) -> list[TimelineEntry]:
    out = []
    for record in history_qs.select_related("history_user").order_by("history_date", "history_id"):
        changes: list[tuple[str, Any, Any]] = []
        prev = record.prev_record
        if prev is not None:
            delta = record.diff_against(prev)
            for ch in delta.changes:
                if ch.field in SKIP_FIELDS:
                    continue
                field = record.instance_type._meta.get_field(ch.field)
                changes.append((str(field.verbose_name), ch.old, ch.new))
            if not changes and record.history_type == "~":
                continue
        out.append(
            TimelineEntry(
                at=record.history_date,
                what=what,
                label=str(record.instance),
                kind=HISTORY_LABELS[record.history_type],
                user=str(record.history_user) if record.history_user else "system",
                reason=record.history_change_reason or "",
                changes=changes,
            )
        )
    return out


def timeline(customer: Customer) -> list[TimelineEntry]:
    from django.apps import apps

    entries = _entries_for(customer.history.all(), str(Customer._meta.verbose_name))
    for model_name, fk in (
        ("ServiceAddress", "customer_id"),
        ("Account", "customer_id"),
        ("MeteringPoint", "customer_id"),
        ("SupplyContract", "customer_id"),
    ):
        model = apps.get_model("customers", model_name)
        entries += _entries_for(model.history.filter(**{fk: customer.pk}), str(model._meta.verbose_name))
    point_ids = list(customer.metering_points.values_list("pk", flat=True))
    for model_name in ("Meter", "InstrumentTransformer"):
        try:
            model = apps.get_model("assets", model_name)
        except LookupError:
            continue
        entries += _entries_for(
            model.history.filter(metering_point_id__in=point_ids), str(model._meta.verbose_name)
        )
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries


def file_as_of(customer: Customer, at: datetime):
    """The customer file as it stood at `at` (rows created later are absent)."""
    from django.apps import apps

    from mmis.customers.queries import CustomerFile, NotFound

    try:
        past = customer.history.as_of(at)
    except Customer.DoesNotExist:
        raise NotFound(f"customer {customer.customer_no} did not exist at {at:%Y-%m-%d %H:%M}") from None

    def rows(model, **filters):
        return [r for r in model.history.as_of(at).filter(**filters).order_by("pk")]

    m = {
        name: apps.get_model("customers", name)
        for name in ("ServiceAddress", "Account", "MeteringPoint", "SupplyContract")
    }
    points = rows(m["MeteringPoint"], customer_id=customer.pk)
    meters: dict[int, list] = {p.pk: [] for p in points}
    transformers: dict[int, list] = {p.pk: [] for p in points}
    try:
        meter_model = apps.get_model("assets", "Meter")
        ct_model = apps.get_model("assets", "InstrumentTransformer")
        for meter in meter_model.history.as_of(at).filter(metering_point_id__in=list(meters)):
            meters[meter.metering_point_id].append(meter)
        for t in ct_model.history.as_of(at).filter(metering_point_id__in=list(meters)):
            transformers[t.metering_point_id].append(t)
    except LookupError:
        pass
    return CustomerFile(
        customer=past,
        addresses=rows(m["ServiceAddress"], customer_id=customer.pk),
        accounts=rows(m["Account"], customer_id=customer.pk),
        points=points,
        contracts=rows(m["SupplyContract"], customer_id=customer.pk),
        meters=meters,
        transformers=transformers,
        as_of=at,
    )
