"""Effects of the service processes: the changes to the customer file, metering and contract
that a process makes when it reaches its implementation step. Each runs inside the transaction
that completes the task (so either all of it happens, with the task completion, or none), goes
through customers.services / assets.services where they have a function, and otherwise
changes rows here directly with their history (`_history_user`, `_change_reason`) and an audit
record. Handlers are idempotent per instance (the engine runs each once).
"""

from __future__ import annotations

import importlib
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from mmis.assets import services as asset_services
from mmis.assets.models import AssetState, InstrumentTransformer, Meter
from mmis.common.errors import FieldError, InvalidInput
from mmis.customers import rules as customer_rules
from mmis.customers import services as customer_services
from mmis.customers.models import (
    Account,
    Customer,
    MeteringPoint,
    ServiceAddress,
    SupplyContract,
    UsageCategory,
)
from mmis.org import audit
from mmis.readings import services as reading_services
from mmis.readings.models import MeterChange
from mmis.services import commitments as params
from mmis.services.models import ServiceChange
from mmis.workflow import effects
from mmis.workflow.effects import EffectContext


class UnableToApplyChange(InvalidInput):
    """The change cannot be applied to the customer file as it stands."""


CONTRACT_TYPE = {
    "lv_residential_new": SupplyContract.Type.RESIDENTIAL,
    "lv_nonresidential_new": SupplyContract.Type.LOW_VOLTAGE,
    "hv_new": SupplyContract.Type.HIGH_VOLTAGE,
    "temporary_supply": SupplyContract.Type.TEMPORARY,
}


# --- helpers ------------------------------------------------------------------------------------
def _day(ctx: EffectContext) -> date:
    return timezone.localtime(ctx.at).date()


def _date(value: Any, default: date) -> date:
    return date.fromisoformat(value) if value else default


def _dec(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value not in (None, "") else None


def _refuse(path: str, message: str) -> UnableToApplyChange:
    return UnableToApplyChange([FieldError(path, message)])


def get_customer(customer_no: str, *, path: str = "data.customer_no", active: bool = True) -> Customer:
    customer = Customer.objects.select_for_update().filter(customer_no=customer_no).first()
    if customer is None:
        raise _refuse(path, f"no customer {customer_no}")
    if active and customer.status != Customer.Status.ACTIVE:
        raise _refuse(path, f"customer {customer_no} is closed")
    return customer


def get_point(customer: Customer, point_no: str | None, *, path: str = "data.point_no") -> MeteringPoint:
    qs = (
        MeteringPoint.objects.select_for_update()
        .filter(customer=customer)
        .exclude(status=MeteringPoint.Status.CLOSED)
    )
    point = (
        qs.filter(point_no=point_no).first() if point_no else qs.filter(role="main").order_by("pk").first()
    )
    if point is None:
        raise _refuse(path, f"customer {customer.customer_no} has no metering point {point_no or ''}".strip())
    return point


def update_point(ctx: EffectContext, point: MeteringPoint, reason: str, **changes: Any) -> MeteringPoint:
    before = audit.snapshot(point)
    for k, v in changes.items():
        setattr(point, k, v)
    point._history_user = ctx.actor
    point._change_reason = reason
    point.save()
    b, a = audit.diff(before, audit.snapshot(point))
    audit.record(
        actor=ctx.actor,
        action="metering_point.change",
        target=point,
        before=b,
        after=a,
        reason=reason,
        at=ctx.at,
    )
    return point


def _save(ctx: EffectContext, row: Any, reason: str, action: str, **changes: Any) -> Any:
    before = audit.snapshot(row)
    for k, v in changes.items():
        setattr(row, k, v)
    row._history_user = ctx.actor
    row._change_reason = reason
    row.save()
    b, a = audit.diff(before, audit.snapshot(row))
    audit.record(actor=ctx.actor, action=action, target=row, before=b, after=a, reason=reason, at=ctx.at)
    return row


def _log(
    ctx: EffectContext, kind: str, customer: Customer, point: MeteringPoint | None = None, **kw: Any
) -> ServiceChange:
    return ServiceChange.objects.create(
        org=customer.org,
        kind=kind,
        customer=customer,
        point=point,
        instance=ctx.instance,
        start_on=kw.pop("start_on", _day(ctx)),
        before=audit.jsonable(kw.pop("before", {})),
        after=audit.jsonable(kw.pop("after", {})),
        **kw,
    )


def _subject(ctx: EffectContext, customer: Customer) -> None:
    ctx.instance.subject_type = "customers.customer"
    ctx.instance.subject_id = str(customer.pk)
    ctx.instance.subject_repr = str(customer)[:200]


def ledger_balance(customer: Customer, *, on: date) -> Decimal:
    """What the customer owes over all accounts, late fees accrued to `on` included, from the
    receivables ledger (mmis.accounts). Refuses clearly when the ledger is not installed."""
    try:
        ledger = importlib.import_module("mmis.accounts.queries")
    except ImportError:
        ledger = None
    if ledger is None or not hasattr(ledger, "balance"):
        raise _refuse(
            "ledger",
            "the receivables ledger (mmis.accounts) is not available: cannot confirm the account is settled",
        )
    total = Decimal(0)
    for account in customer.accounts.all():
        total += ledger.balance(account)
        if hasattr(ledger, "open_items"):
            total += sum((i.accrued_fee for i in ledger.open_items(account, on=on)), Decimal(0))
    return total


def require_settled(customer: Customer, *, on: date, what: str) -> None:
    owed = ledger_balance(customer, on=on)
    if owed > 0:
        raise _refuse(
            "ledger",
            f"customer {customer.customer_no} owes {owed:.2f} 元 (late fees included): "
            f"settle it before {what}",
        )
    if owed < 0:
        raise _refuse(
            "ledger",
            f"customer {customer.customer_no} holds a prepayment of {-owed:.2f} 元: "
            f"refund or transfer it before {what}",
        )


def _meter(asset_no: str, path: str) -> Meter:
    meter = Meter.objects.filter(asset_no=asset_no).first()
    if meter is None:
        raise _refuse(path, f"no meter {asset_no} in the asset register")
    if meter.state != AssetState.IN_STOCK:
        raise _refuse(path, f"meter {asset_no} is {meter.get_state_display()}, not in stock")
    return meter


def _transformers(form: dict) -> list[InstrumentTransformer]:
    out = []
    for key in ("ct_asset_no", "pt_asset_no"):
        if form.get(key):
            t = InstrumentTransformer.objects.filter(asset_no=form[key]).first()
            if t is None:
                raise _refuse(f"form.{key}", f"no transformer {form[key]} in the asset register")
            out.append(t)
    return out


def _install_reading(ctx: EffectContext, point: MeteringPoint, meter: Meter, on: date, value: Any) -> None:
    """The new meter's initial registers (表码底数, 0 when the form leaves it empty) become the
    point's first reading, so its first period is billed from them."""
    try:
        reading_services.record_install_reading(
            actor=ctx.actor, point=point, meter=meter, on=on, total=_dec(value) or Decimal(0), at=ctx.at
        )
    except InvalidInput as exc:
        raise UnableToApplyChange(exc.prefixed("form").errors) from None


def _swap_metering(
    ctx: EffectContext,
    point: MeteringPoint,
    meter: Meter | None,
    transformers: list[InstrumentTransformer],
    on: date,
    reason: str,
) -> MeteringPoint:
    """Replace the point's meter and/or CT/PT in the field, and record the change with the old
    meter's final registers (拆表表码) and the new one's initial registers (表码底数), so that
    billing splits the period at it and VEE lets the next reading through once the order is
    archived (DOMAIN.md §2.1)."""
    form = ctx.form
    old_meter = point.meters.filter(state=AssetState.INSTALLED).first()
    old_multiplier = point.multiplier
    end = _dec(form.get("end_reading"))
    if meter is not None and old_meter is not None and end is None:
        raise _refuse(
            "form.end_reading", "the old meter's final reading is required when the meter is replaced"
        )
    try:
        if transformers:
            point = asset_services.replace_transformers(
                actor=ctx.actor, point=point, transformers=transformers, on=on, reason=reason
            )
        if meter is not None:
            _remove_meters(ctx, point, on, reason)
            point = asset_services.install(
                actor=ctx.actor, point=point, meter=meter, transformers=[], on=on, reason=reason
            )
        new_meter = meter or old_meter
        if old_meter is None:
            _install_reading(ctx, point, new_meter, on, form.get("initial_reading"))
            return point
        old_final = {"total": str(end)} if end is not None else {}
        new_initial = (
            {"total": str(_dec(form.get("initial_reading")) or Decimal(0))}
            if meter is not None
            else old_final
        )
        reading_services.record_meter_change(
            actor=ctx.actor,
            point=point,
            changed_on=on,
            old_meter=old_meter,
            new_meter=new_meter,
            old_multiplier=old_multiplier,
            new_multiplier=point.multiplier,
            old_final=old_final,
            new_initial=new_initial,
            work_order=ctx.instance,
            note=reason,
            at=ctx.at,
        )
    except InvalidInput as exc:
        # name the fields of the step's form: 拆表表码, 表码底数, the meter and CT/PT asset numbers
        names = {"old_final": "end_reading", "new_initial": "initial_reading", "transformers": "ct_asset_no"}
        raise UnableToApplyChange(
            [FieldError(f"form.{names.get(e.path.split('.')[0], e.path)}", e.message) for e in exc.errors]
        ) from None
    return point


@effects.register("services.archived")
def archived(ctx: EffectContext) -> dict:
    """The order's documents are archived: readings that VEE held because this order had changed
    the file (meter, multiplier, tariff) without being archived are validated again (DOMAIN.md
    §2.3), as the metering work order does. The points are those its changes were recorded on and
    the points of the customer it changed."""
    inst = ctx.instance
    points = set(MeterChange.objects.filter(work_order=inst).values_list("metering_point_id", flat=True))
    if inst.subject_type == "customers.customer" and inst.subject_id.isdigit():
        points |= set(
            MeteringPoint.objects.filter(customer_id=int(inst.subject_id)).values_list("pk", flat=True)
        )
    if not points:
        return {}
    counts = reading_services.revalidate_file_change_holds(point_ids=points, order=inst, at=ctx.at)
    return (
        {"revalidated": counts["revalidated"], "revalidated_valid": counts["valid"]}
        if counts["revalidated"]
        else {}
    )


def _remove_meters(ctx: EffectContext, point: MeteringPoint, on: date, reason: str) -> list[str]:
    removed = []
    for m in point.meters.filter(state=AssetState.INSTALLED):
        asset_services.remove(actor=ctx.actor, meter=m, on=on, reason=reason)
        removed.append(m.asset_no)
    return removed


def _new_contract(
    ctx: EffectContext,
    customer: Customer,
    ctype: str,
    capacity: Decimal,
    *,
    signed_on: date,
    effective_on: date,
    expires_on: date | None,
) -> SupplyContract:
    c = customer_services.create_contract(
        actor=ctx.actor,
        customer=customer,
        data={"contract_type": ctype, "capacity_kva": capacity, "expires_on": expires_on},
    )
    c = customer_services.change_contract_state(actor=ctx.actor, contract=c, transition="sign", on=signed_on)
    return customer_services.change_contract_state(
        actor=ctx.actor, contract=c, transition="make_effective", on=effective_on
    )


def _live_contracts(customer: Customer):
    return SupplyContract.objects.select_for_update().filter(
        customer=customer, state__in=[SupplyContract.State.SIGNED, SupplyContract.State.EFFECTIVE]
    )


def _years_later(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


# --- new connections (低压居民 / 低压非居民 / 高压 / 临时) ----------------------------------------------
@effects.register("services.new_connection")
def new_connection(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    code = ctx.instance.definition.code
    energised_on = _date(form.get("energised_on"), _day(ctx))
    installed_on = _date(form.get("installed_on"), energised_on)
    meter = _meter(form.get("meter_asset_no", ""), "form.meter_asset_no")
    transformers = _transformers(form)
    try:
        customer = customer_services.create_customer(
            actor=ctx.actor,
            org=ctx.instance.org,
            opened_on=energised_on,
            data={
                "kind": data.get("customer_kind"),
                "name": data.get("customer_name"),
                "id_type": data.get("id_type"),
                "id_number": data.get("id_number"),
                "phone": data.get("phone"),
                "contact_name": data.get("contact_name", ""),
                "address": {
                    "region": data.get("region"),
                    "street": data.get("street", ""),
                    "detail": data.get("detail"),
                },
            },
        )
    except InvalidInput as exc:
        raise UnableToApplyChange(exc.prefixed("data").errors) from None
    category = UsageCategory.RESIDENTIAL if code == "lv_residential_new" else data.get("usage_category")
    try:
        point = customer_services.add_metering_point(
            actor=ctx.actor,
            customer=customer,
            data={
                "usage_category": category,
                "voltage_level": data.get("voltage_level"),
                "contract_capacity_kva": data.get("capacity_kva"),
                "tier_persons": int(data.get("tier_persons") or 0),
                "tariff_code": data.get("tariff_code", ""),
                "reading_book_code": data.get("reading_book_code", ""),
                "basic_charge_mode": data.get("basic_charge_mode", ""),
                "contract_demand_kw": data.get("contract_demand_kw"),
                "pf_standard": data.get("pf_standard", ""),
                "position": data.get("metering_position", "boundary"),
            },
        )
    except InvalidInput as exc:
        raise UnableToApplyChange(exc.prefixed("data").errors) from None
    signed_on = _date(data.get("signed_on"), energised_on)
    if code == "temporary_supply":
        expires_on = _date(
            data.get("supply_until"), energised_on + timedelta(days=params.TEMPORARY_SUPPLY_MAX_DAYS)
        )
    else:
        expires_on = _years_later(signed_on, int(data.get("contract_years") or 5))
    contract = _new_contract(
        ctx,
        customer,
        CONTRACT_TYPE.get(code, SupplyContract.Type.LOW_VOLTAGE),
        point.contract_capacity_kva,
        signed_on=signed_on,
        effective_on=energised_on,
        expires_on=expires_on,
    )
    point = asset_services.install(
        actor=ctx.actor,
        point=point,
        meter=meter,
        transformers=transformers,
        on=installed_on,
        reason="新装装表",
    )
    _install_reading(ctx, point, meter, installed_on, form.get("initial_reading"))
    update_point(ctx, point, "新装送电", energised_on=energised_on)
    _log(
        ctx,
        ServiceChange.Kind.NEW_CONNECTION,
        customer,
        point,
        kva=point.contract_capacity_kva,
        start_on=energised_on,
        after={"meter": meter.asset_no, "contract": contract.contract_no},
    )
    _subject(ctx, customer)
    return {
        "customer_id": customer.pk,
        "customer_no": customer.customer_no,
        "point_no": point.point_no,
        "contract_no": contract.contract_no,
        "account_no": customer.accounts.order_by("pk").first().account_no,
    }


# --- capacity -----------------------------------------------------------------------------------
@effects.register("services.capacity_increase")
def capacity_increase(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    new_kva = _dec(data.get("new_capacity_kva"))
    if new_kva is None or new_kva <= point.contract_capacity_kva:
        raise _refuse("data.new_capacity_kva", f"must be above the present {point.contract_capacity_kva} kVA")
    voltage = data.get("voltage_level") or point.voltage_level
    if r := customer_rules.check_capacity(
        usage_category=point.usage_category, voltage_level=voltage, capacity_kva=new_kva
    ):
        raise _refuse("data.new_capacity_kva", r)
    on = _date(form.get("done_on"), _day(ctx))
    before = {"capacity": point.contract_capacity_kva, "voltage": point.voltage_level}
    meter = _meter(form["meter_asset_no"], "form.meter_asset_no") if form.get("meter_asset_no") else None
    transformers = _transformers(form)
    added = new_kva - point.contract_capacity_kva
    point = update_point(
        ctx,
        point,
        "增容",
        contract_capacity_kva=new_kva,
        operating_capacity_kva=point.operating_capacity_kva + added,
        voltage_level=voltage,
    )
    if meter is not None or transformers:
        point = _swap_metering(
            ctx, point, meter, transformers, _date(form.get("installed_on"), on), "增容换表"
        )
    for c in _live_contracts(customer):
        _save(ctx, c, "增容", "contract.capacity", capacity_kva=new_kva)
    _log(
        ctx,
        ServiceChange.Kind.CAPACITY_INCREASE,
        customer,
        point,
        kva=added,
        start_on=on,
        before=before,
        after={"capacity": new_kva, "voltage": voltage},
    )
    _subject(ctx, customer)
    return {"capacity_kva": str(new_kva)}


def _single_part_if_below_threshold(point: MeteringPoint, remaining: Decimal) -> dict:
    if point.basic_charge_mode and remaining < params.TWO_PART_REQUIRED_KVA:
        return {"basic_charge_mode": "", "contract_demand_kw": None}
    return {}


@effects.register("services.capacity_reduction")
def capacity_reduction(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    kva = _dec(data.get("reduced_kva"))
    if not form.get("sealed"):
        raise _refuse("form.sealed", "the reduced equipment must be sealed first (加封)")
    if kva is None or kva <= 0 or kva >= point.contract_capacity_kva:
        raise _refuse(
            "data.reduced_kva", f"must be above 0 and below the present {point.contract_capacity_kva} kVA"
        )
    start_on = _date(data.get("start_on"), _day(ctx))
    remaining = point.contract_capacity_kva - kva
    extra = _single_part_if_below_threshold(point, remaining)
    before = {"capacity": point.contract_capacity_kva, "basic_charge_mode": point.basic_charge_mode}
    point = update_point(
        ctx,
        point,
        "减容",
        contract_capacity_kva=remaining,
        operating_capacity_kva=max(point.operating_capacity_kva - kva, Decimal(0)),
        **extra,
    )
    for c in _live_contracts(customer):
        _save(ctx, c, "减容", "contract.capacity", capacity_kva=remaining)
    _log(
        ctx,
        ServiceChange.Kind.CAPACITY_REDUCTION,
        customer,
        point,
        kva=kva,
        start_on=start_on,
        end_on=_date(data.get("end_on"), None) if data.get("end_on") else None,
        before=before,
        after={"capacity": remaining, "single_part": bool(extra)},
    )
    _subject(ctx, customer)
    return {"capacity_kva": str(remaining), "switched_to_single_part": bool(extra)}


def _open_change(point: MeteringPoint, kind: str) -> ServiceChange | None:
    return (
        ServiceChange.objects.select_for_update()
        .filter(point=point, kind=kind, restored_on__isnull=True)
        .order_by("-start_on", "-id")
        .first()
    )


@effects.register("services.capacity_reduction_restore")
def capacity_reduction_restore(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    reduction = _open_change(point, ServiceChange.Kind.CAPACITY_REDUCTION)
    if reduction is None:
        raise _refuse("data.point_no", f"{point.point_no} has no capacity reduction to restore")
    restore_on = _date(data.get("restore_on"), _day(ctx))
    if restore_on > _years_later(reduction.start_on, params.REDUCTION_RESTORE_YEARS):
        raise _refuse(
            "data.restore_on",
            f"the reduction began {reduction.start_on}: after {params.REDUCTION_RESTORE_YEARS} years "
            "it is a new application (增容), not a restoration",
        )
    if not form.get("seal_removed"):
        raise _refuse("form.seal_removed", "remove the seals (启封) first")
    restored = point.contract_capacity_kva + reduction.kva
    point = update_point(
        ctx,
        point,
        "减容恢复",
        contract_capacity_kva=restored,
        operating_capacity_kva=point.operating_capacity_kva + reduction.kva,
    )
    for c in _live_contracts(customer):
        _save(ctx, c, "减容恢复", "contract.capacity", capacity_kva=restored)
    reduction.restored_on = restore_on
    reduction.save(update_fields=["restored_on"])
    _subject(ctx, customer)
    return {"capacity_kva": str(restored)}


def suspension_days_in_year(point: MeteringPoint, year: int, *, exclude_id: int | None = None) -> int:
    total = 0
    for s in ServiceChange.objects.filter(
        point=point, kind=ServiceChange.Kind.SUSPENSION, start_on__year=year
    ).exclude(pk=exclude_id):
        end = s.restored_on or s.end_on or s.start_on
        total += (end - s.start_on).days
    return total


def check_suspension(
    point: MeteringPoint, kva: Decimal | None, start_on: date, end_on: date
) -> list[FieldError]:
    """§3.4: whole transformers, at least 15 days each, at most 6 months per calendar year."""
    errors = []
    if kva is None or kva <= 0 or kva > point.operating_capacity_kva:
        errors.append(
            FieldError(
                "data.suspended_kva",
                f"must be above 0 and at most the running {point.operating_capacity_kva} kVA",
            )
        )
    days = (end_on - start_on).days
    if days < params.SUSPENSION_MIN_DAYS:
        errors.append(
            FieldError(
                "data.end_on",
                f"a suspension lasts at least {params.SUSPENSION_MIN_DAYS} days, this one {days}",
            )
        )
    used = suspension_days_in_year(point, start_on.year)
    if used + days > params.SUSPENSION_MAX_DAYS_PER_YEAR:
        errors.append(
            FieldError(
                "data.end_on",
                f"{used} days already suspended in {start_on.year}; at most "
                f"{params.SUSPENSION_MAX_DAYS_PER_YEAR} days a year — beyond that apply for a "
                "capacity reduction (减容)",
            )
        )
    return errors


@effects.register("services.suspension")
def suspension(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    kva = _dec(data.get("suspended_kva"))
    start_on = _date(data.get("start_on"), _day(ctx))
    end_on = _date(data.get("end_on"), start_on)
    errors = check_suspension(point, kva, start_on, end_on)
    if not form.get("sealed"):
        errors.append(FieldError("form.sealed", "the suspended transformers must be sealed (加封)"))
    if errors:
        raise UnableToApplyChange(errors)
    running = point.operating_capacity_kva - kva
    changes: dict[str, Any] = {"operating_capacity_kva": running}
    if running == 0:
        changes["status"] = MeteringPoint.Status.SUSPENDED
    point = update_point(ctx, point, "暂停", **changes)
    _log(
        ctx,
        ServiceChange.Kind.SUSPENSION,
        customer,
        point,
        kva=kva,
        start_on=start_on,
        end_on=end_on,
        after={"operating_capacity_kva": running},
    )
    _subject(ctx, customer)
    return {"operating_capacity_kva": str(running)}


@effects.register("services.suspension_restore")
def suspension_restore(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    s = _open_change(point, ServiceChange.Kind.SUSPENSION)
    if s is None:
        raise _refuse("data.point_no", f"{point.point_no} is not suspended")
    if not form.get("seal_removed"):
        raise _refuse("form.seal_removed", "remove the seals (启封) first")
    restore_on = _date(data.get("restore_on"), _day(ctx))
    if restore_on < s.start_on:
        raise _refuse("data.restore_on", f"the suspension began {s.start_on}")
    running = point.operating_capacity_kva + s.kva
    point = update_point(
        ctx, point, "暂停恢复", operating_capacity_kva=running, status=MeteringPoint.Status.ACTIVE
    )
    s.restored_on = restore_on
    s.save(update_fields=["restored_on"])
    _subject(ctx, customer)
    return {"operating_capacity_kva": str(running), "suspended_days": (restore_on - s.start_on).days}


# --- meter, address, party ------------------------------------------------------------------------
@effects.register("services.meter_relocation")
def meter_relocation(ctx: EffectContext) -> dict:
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    on = _date(form.get("done_on"), _day(ctx))
    before = {"name": point.name}
    _log(
        ctx,
        ServiceChange.Kind.METER_RELOCATION,
        customer,
        point,
        start_on=on,
        before=before,
        after={"location": data.get("new_location"), "end_reading": form.get("end_reading")},
    )
    audit.record(
        actor=ctx.actor,
        action="meter.relocate",
        target=point,
        after={"location": data.get("new_location")},
        at=ctx.at,
    )
    _subject(ctx, customer)
    return {"meter_location": data.get("new_location")}


@effects.register("services.address_move")
def address_move(ctx: EffectContext) -> dict:
    data = ctx.data
    customer = get_customer(data["customer_no"])
    region, street, detail = (
        data.get("new_region", ""),
        data.get("new_street", ""),
        data.get("new_detail", ""),
    )
    if not region or not detail:
        raise _refuse("data.new_detail", "the new address needs region and detail")
    addr = ServiceAddress(
        org=customer.org,
        customer=customer,
        region=region,
        street=street,
        detail=detail,
        full_text=f"{region}{street}{detail}",
    )
    addr._history_user = ctx.actor
    addr.save()
    points = list(
        MeteringPoint.objects.select_for_update().filter(customer=customer).exclude(status="closed")
    )
    if data.get("point_no"):
        points = [p for p in points if p.point_no == data["point_no"]]
        if not points:
            raise _refuse("data.point_no", f"no metering point {data['point_no']}")
    old = {p.point_no: p.address.full_text for p in points}
    for p in points:
        update_point(ctx, p, "迁址", address=addr)
    _log(
        ctx,
        ServiceChange.Kind.ADDRESS_MOVE,
        customer,
        points[0] if points else None,
        before=old,
        after={"address": addr.full_text},
    )
    _subject(ctx, customer)
    return {"new_address": addr.full_text}


@effects.register("services.name_change")
def name_change(ctx: EffectContext) -> dict:
    data = ctx.data
    customer = get_customer(data["customer_no"])
    old = customer.name
    try:
        customer = customer_services.update_customer(
            actor=ctx.actor, customer=customer, changes={"name": data.get("new_name")}, reason="更名"
        )
    except InvalidInput as exc:
        raise UnableToApplyChange(exc.prefixed("data").errors) from None
    for acc in Account.objects.select_for_update().filter(customer=customer, name=old):
        _save(ctx, acc, "更名", "account.rename", name=customer.name)
    _log(ctx, ServiceChange.Kind.NAME_CHANGE, customer, before={"name": old}, after={"name": customer.name})
    _subject(ctx, customer)
    return {"old_name": old}


@effects.register("services.transfer")
def transfer(ctx: EffectContext) -> dict:
    """过户: the receivables are settled first; identity changes; the old contract ends and a new
    one is made for the new owner."""
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    on = _date(form.get("done_on"), _day(ctx))
    require_settled(customer, on=on, what="a change of owner")
    old = {"name": customer.name, "kind": customer.kind, "id": customer.id_number_mask}
    kind = data.get("new_customer_kind") or customer.kind
    if kind != customer.kind:
        _save(ctx, customer, "过户", "customer.kind", kind=kind)
    try:
        customer = customer_services.update_customer(
            actor=ctx.actor,
            customer=customer,
            changes={
                "name": data.get("new_name"),
                "id_type": data.get("new_id_type"),
                "id_number": data.get("new_id_number"),
                "phone": data.get("new_phone"),
            },
            reason="过户",
        )
    except InvalidInput as exc:
        errors = [
            FieldError(f"data.new_{e.path}" if e.path != "name" else "data.new_name", e.message)
            for e in exc.errors
        ]
        raise UnableToApplyChange(errors) from None
    for acc in Account.objects.select_for_update().filter(customer=customer):
        _save(ctx, acc, "过户", "account.rename", name=customer.name)
    new_contracts = []
    for c in list(_live_contracts(customer)):
        customer_services.change_contract_state(
            actor=ctx.actor, contract=c, transition="terminate", on=on, reason="过户"
        )
        new = _new_contract(
            ctx,
            customer,
            c.contract_type,
            c.capacity_kva,
            signed_on=on,
            effective_on=on,
            expires_on=_years_later(on, 5),
        )
        new_contracts.append(new.contract_no)
    _log(
        ctx,
        ServiceChange.Kind.TRANSFER,
        customer,
        start_on=on,
        before=old,
        after={
            "name": customer.name,
            "tier_year": data.get("tier_year") or "continue",
            "contracts": new_contracts,
        },
    )
    _subject(ctx, customer)
    return {"old_name": old["name"], "new_contracts": new_contracts}


@effects.register("services.account_split")
def account_split(ctx: EffectContext) -> dict:
    """分户: one metering point leaves to a new customer with its own account."""
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    others = MeteringPoint.objects.filter(customer=customer).exclude(status="closed").exclude(pk=point.pk)
    if not others.exists():
        raise _refuse("data.point_no", "the customer has only this metering point: nothing to split")
    on = _date(form.get("done_on"), _day(ctx))
    addr = point.address
    try:
        new = customer_services.create_customer(
            actor=ctx.actor,
            org=customer.org,
            opened_on=on,
            data={
                "kind": data.get("new_customer_kind"),
                "name": data.get("new_name"),
                "id_type": data.get("new_id_type"),
                "id_number": data.get("new_id_number"),
                "phone": data.get("new_phone"),
                "contact_name": data.get("new_contact_name", ""),
                "address": {"region": addr.region, "street": addr.street, "detail": addr.detail},
            },
        )
    except InvalidInput as exc:
        raise UnableToApplyChange([FieldError(f"data.new_{e.path}", e.message) for e in exc.errors]) from None
    new_addr = new.addresses.order_by("pk").first()
    new_acc = new.accounts.order_by("pk").first()
    update_point(ctx, point, "分户", customer=new, account=new_acc, address=new_addr)
    _log(
        ctx,
        ServiceChange.Kind.ACCOUNT_SPLIT,
        customer,
        point,
        start_on=on,
        after={"new_customer": new.customer_no, "point": point.point_no},
    )
    _subject(ctx, customer)
    return {"new_customer_no": new.customer_no, "new_account_no": new_acc.account_no}


@effects.register("services.account_merge")
def account_merge(ctx: EffectContext) -> dict:
    """并户: the metering points of another customer join this customer's account; the other
    customer (settled first) is closed."""
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    other = get_customer(data.get("merged_customer_no", ""), path="data.merged_customer_no")
    if other.pk == customer.pk:
        raise _refuse("data.merged_customer_no", "a customer cannot be merged into itself")
    if other.org_id != customer.org_id:
        raise _refuse("data.merged_customer_no", "both customers must belong to the same supply org")
    on = _date(form.get("done_on"), _day(ctx))
    require_settled(other, on=on, what="merging accounts")
    account = customer.accounts.order_by("pk").first()
    moved = []
    for addr in ServiceAddress.objects.select_for_update().filter(customer=other):
        _save(ctx, addr, "并户", "address.move", customer=customer)
    for p in MeteringPoint.objects.select_for_update().filter(customer=other).exclude(status="closed"):
        update_point(ctx, p, "并户", customer=customer, account=account)
        moved.append(p.point_no)
    for c in list(_live_contracts(other)):
        customer_services.change_contract_state(
            actor=ctx.actor, contract=c, transition="terminate", on=on, reason="并户"
        )
    capacity = MeteringPoint.objects.filter(customer=customer).exclude(status="closed").aggregate(
        t=Sum("contract_capacity_kva")
    )["t"] or Decimal(0)
    for c in _live_contracts(customer):
        _save(ctx, c, "并户", "contract.capacity", capacity_kva=capacity)
    _save(ctx, other, "并户", "customer.close", status=Customer.Status.CLOSED, closed_on=on)
    _log(
        ctx,
        ServiceChange.Kind.ACCOUNT_MERGE,
        customer,
        start_on=on,
        after={"merged": other.customer_no, "points": moved},
    )
    _subject(ctx, customer)
    return {"moved_points": moved}


@effects.register("services.voltage_change")
def voltage_change(ctx: EffectContext) -> dict:
    data = ctx.data
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    new = data.get("new_voltage_level")
    if new == point.voltage_level:
        raise _refuse("data.new_voltage_level", f"the point is already at {new}")
    if r := customer_rules.check_capacity(
        usage_category=point.usage_category, voltage_level=new, capacity_kva=point.contract_capacity_kva
    ):
        raise _refuse("data.new_voltage_level", r)
    old = point.voltage_level
    update_point(ctx, point, "改压", voltage_level=new)
    _log(
        ctx,
        ServiceChange.Kind.VOLTAGE_CHANGE,
        customer,
        point,
        before={"voltage": old},
        after={"voltage": new},
    )
    _subject(ctx, customer)
    return {"old_voltage_level": old}


@effects.register("services.category_change")
def category_change(ctx: EffectContext) -> dict:
    data = ctx.data
    customer = get_customer(data["customer_no"])
    point = get_point(customer, data.get("point_no"))
    new = data.get("new_usage_category")
    if new == point.usage_category:
        raise _refuse("data.new_usage_category", "the point already has this category")
    changes: dict[str, Any] = {"usage_category": new}
    if data.get("new_tariff_code"):
        changes["tariff_code"] = data["new_tariff_code"]
    if new == UsageCategory.RESIDENTIAL:
        changes.update(basic_charge_mode="", contract_demand_kw=None, pf_standard="")
    old = {"usage_category": point.usage_category, "tariff_code": point.tariff_code}
    update_point(ctx, point, "改类", **changes)
    _log(ctx, ServiceChange.Kind.CATEGORY_CHANGE, customer, point, before=old, after=changes)
    _subject(ctx, customer)
    return {"old_usage_category": old["usage_category"]}


@effects.register("services.account_closure")
def account_closure(ctx: EffectContext) -> dict:
    """销户: the final bill and the ledger are settled first; meters removed, points closed,
    contracts terminated, the customer closed."""
    data, form = ctx.data, ctx.form
    customer = get_customer(data["customer_no"])
    on = _date(form.get("done_on"), _day(ctx))
    if not data.get("settled"):
        raise _refuse("data.settled", "the final bill is not settled (结清电费)")
    require_settled(customer, on=on, what="closing the account")
    removed, points = [], []
    for p in MeteringPoint.objects.select_for_update().filter(customer=customer).exclude(status="closed"):
        removed += _remove_meters(ctx, p, on, "销户拆表")
        update_point(ctx, p, "销户", status=MeteringPoint.Status.CLOSED)
        points.append(p.point_no)
    for c in list(_live_contracts(customer)):
        customer_services.change_contract_state(
            actor=ctx.actor, contract=c, transition="terminate", on=on, reason="销户"
        )
    _save(ctx, customer, "销户", "customer.close", status=Customer.Status.CLOSED, closed_on=on)
    _log(
        ctx,
        ServiceChange.Kind.ACCOUNT_CLOSURE,
        customer,
        start_on=on,
        after={"points": points, "meters_removed": removed, "final_reading": form.get("final_reading")},
    )
    _subject(ctx, customer)
    return {"closed_on": on.isoformat(), "meters_removed": removed}
