"""The metering work order (计量装拆工单) on the workflow engine: a meter replaced (换表) and/or new
CT/PT (a new multiplier), done in the field with the old meter's final and the new meter's initial
registers (DOMAIN.md §2.1: "Final and initial readings come from the field work order").

The process is data (`SPEC`, published per province by `install_definitions`); its field step runs
the effect `readings.meter_change`, which swaps the assets on the point, sets the multiplier and
records a `MeterChange` linked to the work order. The order is closed by the archive step; until
then, VEE holds the point's next reading (file change without a closed work order, §2.3), and the
archive step's effect `readings.meter_change_archived` validates the held readings again.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.utils import timezone

from mmis.assets.models import AssetState, InstrumentTransformer, Meter
from mmis.assets.services import point_multiplier
from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.customers import services as customer_services
from mmis.customers.models import MeteringPoint
from mmis.org import audit
from mmis.org.models import Org, User
from mmis.readings import services
from mmis.readings.models import MeterChange
from mmis.workflow import effects
from mmis.workflow import services as wf
from mmis.workflow.effects import EffectContext
from mmis.workflow.models import ProcessDefinition, ProcessInstance

METER_CHANGE = "meter_change"
REGS = (
    ("total", "总"),
    ("sharp", "尖"),
    ("peak", "峰"),
    ("flat", "平"),
    ("valley", "谷"),
    ("reactive", "无功"),
)


def _field(name: str, label: str, type_: str = "text", *, required: bool = False, **kw: Any) -> dict:
    return {"name": name, "label": label, "type": type_, "required": required, **kw}


SPEC: dict[str, Any] = {
    "start": "field",
    "time_limit": {"value": 5, "unit": "working_days"},
    "warn_share": "0.8",
    "start_form": [
        _field("point_no", "计量点编号", required=True),
        _field(
            "reason",
            "变更原因",
            "choice",
            required=True,
            choices=[
                ["fault", "故障换表"],
                ["rotation", "周期轮换"],
                ["upgrade", "改造升级"],
                ["ratio", "互感器变比变更"],
                ["other", "其他"],
            ],
        ),
        _field("note", "说明"),
    ],
    "steps": [
        {
            "code": "field",
            "name": "现场装拆",
            "role": "meter_reader",
            "org_level": "station",
            "time_limit": {"value": 3, "unit": "working_days"},
            "form": [
                _field("done_on", "装拆日期", "date", required=True),
                *[
                    _field(f"old_{n}", f"拆表{label}示数", "decimal", required=n == "total", min=0)
                    for n, label in REGS
                ],
                _field("new_meter_asset_no", "新表资产号", help="不换表(只换互感器)则不填"),
                *[_field(f"new_{n}", f"装表{label}示数", "decimal", min=0) for n, label in REGS],
                _field("ct_asset_no", "新电流互感器资产号"),
                _field("pt_asset_no", "新电压互感器资产号"),
            ],
            "effect": "readings.meter_change",
            "next": [{"to": "archive"}],
        },
        {
            "code": "archive",
            "name": "资料归档",
            "role": "billing_auditor",
            "org_level": "county",
            "time_limit": {"value": 1, "unit": "working_days"},
            "form": [_field("archive_note", "归档说明")],
            "effect": "readings.meter_change_archived",
            "next": [],
        },
    ],
}


def install_definitions(
    *, actor: User | None, province: Org, at: datetime, effective_from: date
) -> ProcessDefinition:
    """Publish the metering work order for a province (left alone when the latest version has
    the same spec)."""
    latest = ProcessDefinition.objects.filter(org=province, code=METER_CHANGE).order_by("-version").first()
    if latest is not None and latest.spec == SPEC:
        return latest
    return wf.publish_definition(
        actor=actor,
        org=province,
        code=METER_CHANGE,
        name="计量装拆(换表/互感器)",
        spec=SPEC,
        effective_from=effective_from,
        at=at,
        category="metering",
        number_prefix="JL",
    )


def _refuse(path: str, message: str) -> InvalidInput:
    return services.UnableToRecordMeterChange([FieldError(path, message)])


def _regs(form: dict, prefix: str) -> dict[str, str]:
    return {n: form[f"{prefix}_{n}"] for n, _ in REGS if form.get(f"{prefix}_{n}") not in (None, "")}


def _install(
    asset: Any, *, point: MeteringPoint | None, state: str, on: date, actor: Any, reason: str
) -> None:
    asset.state = state
    if state == AssetState.INSTALLED:
        asset.metering_point = point
        asset.installed_on = on
    elif hasattr(asset, "removed_on"):
        asset.removed_on = on
    asset._history_user = actor
    asset._change_reason = reason
    asset.save()


@effects.register("readings.meter_change")
def meter_change(ctx: EffectContext) -> dict:
    """Swap the meter and/or CT/PT on the point as the field form says, set the multiplier from
    the CT/PT now installed, and record the change with its registers, linked to this order."""
    data, form = ctx.data, ctx.form
    point = MeteringPoint.objects.select_for_update().filter(point_no=data.get("point_no", "")).first()
    if point is None:
        raise _refuse("data.point_no", f"no metering point {data.get('point_no')}")
    on = date.fromisoformat(form["done_on"])
    old = services.current_meter(point.pk)
    new = old
    if form.get("new_meter_asset_no"):
        new = Meter.objects.select_for_update().filter(asset_no=form["new_meter_asset_no"]).first()
        if new is None:
            raise _refuse("form.new_meter_asset_no", f"no meter {form['new_meter_asset_no']} in the register")
        if new.state != AssetState.IN_STOCK:
            raise _refuse("form.new_meter_asset_no", f"meter {new.asset_no} is {new.state}, not in stock")
    added = []
    for key in ("ct_asset_no", "pt_asset_no"):
        if form.get(key):
            t = InstrumentTransformer.objects.select_for_update().filter(asset_no=form[key]).first()
            if t is None:
                raise _refuse(f"form.{key}", f"no transformer {form[key]} in the register")
            if t.state != AssetState.IN_STOCK:
                raise _refuse(f"form.{key}", f"{t.asset_no} is {t.state}, not in stock")
            added.append(t)
    if new == old and not added:
        raise _refuse("form.new_meter_asset_no", "give the new meter or the new CT/PT")
    if new != old and not form.get("new_total"):
        raise _refuse("form.new_total", "the new meter's initial reading is required")
    reason = f"计量装拆 {ctx.instance.number}"
    old_mult = point.multiplier
    if new != old:
        if old is not None:
            _install(old, point=None, state=AssetState.REMOVED, on=on, actor=ctx.actor, reason=reason)
        _install(new, point=point, state=AssetState.INSTALLED, on=on, actor=ctx.actor, reason=reason)
    if added:
        kinds = {t.kind for t in added}
        for t in InstrumentTransformer.objects.select_for_update().filter(
            metering_point=point, state=AssetState.INSTALLED, kind__in=kinds
        ):
            _install(t, point=None, state=AssetState.REMOVED, on=on, actor=ctx.actor, reason=reason)
        for t in added:
            _install(t, point=point, state=AssetState.INSTALLED, on=on, actor=ctx.actor, reason=reason)
        installed = list(
            InstrumentTransformer.objects.filter(metering_point=point, state=AssetState.INSTALLED)
        )
        point = customer_services.set_multiplier(
            actor=ctx.actor, point=point, multiplier=point_multiplier(installed), reason=reason
        )
    old_final = _regs(form, "old")
    mc = services.record_meter_change(
        actor=ctx.actor,
        point=point,
        changed_on=on,
        old_meter=old,
        new_meter=new,
        old_multiplier=old_mult,
        new_multiplier=point.multiplier,
        old_final=old_final,
        new_initial=_regs(form, "new") if new != old else old_final,
        work_order=ctx.instance,
        note=f"{data.get('reason', '')} {data.get('note', '')}".strip(),
        at=ctx.at,
    )
    audit.record(
        actor=ctx.actor,
        action="meter.change",
        target=point,
        after={
            "old_meter": old.asset_no if old else None,
            "new_meter": new.asset_no if new else None,
            "transformers": [t.asset_no for t in added],
            "multiplier": point.multiplier,
            "work_order": ctx.instance.number,
        },
        reason=reason,
        at=ctx.at,
    )
    ctx.instance.subject_type = "customers.meteringpoint"
    ctx.instance.subject_id = str(point.pk)
    ctx.instance.subject_repr = str(point)[:200]
    return {
        "meter_change_id": mc.pk,
        "old_meter_asset_no": old.asset_no if old else "",
        "meter_asset_no": new.asset_no if new else "",
        "multiplier": str(point.multiplier),
    }


@effects.register("readings.meter_change_archived")
def meter_change_archived(ctx: EffectContext) -> dict:
    """The order is archived (its last step): the readings that VEE held because this order was
    not archived yet are validated again, as a system action (DOMAIN.md §2.3 file change)."""
    points = set(
        MeterChange.objects.filter(work_order=ctx.instance).values_list("metering_point_id", flat=True)
    )
    if ctx.instance.subject_type == "customers.meteringpoint" and ctx.instance.subject_id.isdigit():
        points.add(int(ctx.instance.subject_id))
    counts = services.revalidate_file_change_holds(point_ids=points, order=ctx.instance, at=ctx.at)
    return {"revalidated": counts["revalidated"], "revalidated_valid": counts["valid"]}


def open_meter_change(
    *, actor: User, point: MeteringPoint, reason: str, at: datetime, note: str = ""
) -> ProcessInstance:
    """Start a metering work order for a point (its field task goes to the station's readers)."""
    try:
        wf.resolve_definition(code=METER_CHANGE, org=point.org, on=timezone.localtime(at).date())
    except NotFound:
        raise services.UnableToRecordMeterChange(
            [FieldError("process", f"no metering work order process is published for {point.org.name}")]
        ) from None
    return wf.start_process(
        actor=actor,
        code=METER_CHANGE,
        org=point.org,
        title=f"计量装拆 {point.point_no}",
        data={"point_no": point.point_no, "reason": reason, "note": note},
        at=at,
        subject_type="customers.meteringpoint",
        subject_id=str(point.pk),
        subject_repr=str(point),
    )
