"""Metering asset use cases: register meters and CT/PT, install them on a metering point (which
sets the point's multiplier = CT ratio × PT ratio), remove them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction

from mmis.assets.models import AssetState, InstrumentTransformer, Meter
from mmis.common.errors import FieldError, InvalidInput
from mmis.customers import rules
from mmis.customers import services as customer_services
from mmis.customers.models import MeteringPoint
from mmis.org import audit
from mmis.org.models import Org, User


class UnableToInstall(InvalidInput):
    pass


def register_meter(
    *,
    actor: User | None,
    org: Org,
    asset_no: str,
    kind: str,
    register_digits: int = 6,
    tou: bool = False,
    comm_address: str = "",
    model: str = "",
    manufacturer: str = "",
) -> Meter:
    errors = []
    if not asset_no or len(asset_no) > 24 or not asset_no.isalnum():
        errors.append(FieldError("asset_no", "is required: up to 24 letters or digits"))
    elif Meter.objects.filter(asset_no=asset_no).exists():
        errors.append(FieldError("asset_no", f"meter {asset_no} is already registered"))
    if kind not in Meter.Kind.values:
        errors.append(FieldError("kind", f"unknown value {kind!r}"))
    if not 4 <= register_digits <= 8:
        errors.append(FieldError("register_digits", "must be 4 to 8"))
    if comm_address and not (comm_address.isdigit() and len(comm_address) == 12):
        errors.append(FieldError("comm_address", "a DL/T 645 address is 12 digits"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        meter = Meter(
            org=org,
            asset_no=asset_no,
            kind=kind,
            register_digits=register_digits,
            tou=tou,
            comm_address=comm_address,
            model=model,
            manufacturer=manufacturer,
        )
        meter._history_user = actor
        meter.save()
        audit.record(actor=actor, action="meter.register", target=meter, after=audit.snapshot(meter))
    return meter


def register_transformer(
    *, actor: User | None, org: Org, asset_no: str, kind: str, primary: Decimal, secondary: Decimal
) -> InstrumentTransformer:
    errors = []
    if kind not in InstrumentTransformer.Kind.values:
        errors.append(FieldError("kind", f"unknown value {kind!r}"))
    if InstrumentTransformer.objects.filter(asset_no=asset_no).exists():
        errors.append(FieldError("asset_no", f"transformer {asset_no} is already registered"))
    if primary is None or primary <= 0:
        errors.append(FieldError("primary", "must be greater than 0"))
    if secondary is None or secondary <= 0:
        errors.append(FieldError("secondary", "must be greater than 0"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        t = InstrumentTransformer(org=org, asset_no=asset_no, kind=kind, primary=primary, secondary=secondary)
        t._history_user = actor
        t.save()
        audit.record(actor=actor, action="transformer.register", target=t, after=audit.snapshot(t))
    return t


def point_multiplier(transformers: list[InstrumentTransformer]) -> Decimal:
    cts = [t for t in transformers if t.kind == InstrumentTransformer.Kind.CT]
    pts = [t for t in transformers if t.kind == InstrumentTransformer.Kind.PT]
    ct = cts[0] if cts else None
    pt = pts[0] if pts else None
    return rules.multiplier(
        ct_primary=ct.primary if ct else Decimal(1),
        ct_secondary=ct.secondary if ct else Decimal(1),
        pt_primary=pt.primary if pt else Decimal(1),
        pt_secondary=pt.secondary if pt else Decimal(1),
    )


def install(
    *,
    actor: User | None,
    point: MeteringPoint,
    meter: Meter,
    transformers: list[InstrumentTransformer],
    on: date,
    reason: str = "装表",
) -> MeteringPoint:
    """Install a meter (and its CT/PT) on a metering point; the point's multiplier follows."""
    errors = []
    with transaction.atomic():
        meter = Meter.objects.select_for_update().get(pk=meter.pk)
        if meter.state != AssetState.IN_STOCK:
            errors.append(FieldError("meter", f"meter {meter.asset_no} is {meter.state}, not in stock"))
        if point.meters.filter(state=AssetState.INSTALLED).exists():
            errors.append(
                FieldError("metering_point", f"{point.point_no} already has a running meter; remove it")
            )
        locked = list(
            InstrumentTransformer.objects.select_for_update().filter(pk__in=[t.pk for t in transformers])
        )
        for t in locked:
            if t.state != AssetState.IN_STOCK:
                errors.append(FieldError("transformers", f"{t.asset_no} is {t.state}, not in stock"))
        errors += _transformer_errors(point, locked)
        if errors:
            raise UnableToInstall(errors)
        _mount([meter, *locked], point=point, on=on, actor=actor, reason=reason)
        # the CT/PT that stay on the point count too: a meter swap alone keeps the multiplier
        point = customer_services.set_multiplier(
            actor=actor, point=point, multiplier=point_multiplier(_installed_on(point)), reason=reason
        )
        audit.record(
            actor=actor,
            action="meter.install",
            target=meter,
            after={
                "point": point.point_no,
                "transformers": [t.asset_no for t in locked],
                "multiplier": str(point.multiplier),
                "on": on.isoformat(),
            },
        )
    return point


def _mount(assets: list, *, point: MeteringPoint, on: date, actor: User | None, reason: str) -> None:
    for asset in assets:
        asset.state = AssetState.INSTALLED
        asset.metering_point = point
        asset.installed_on = on
        asset._history_user = actor
        asset._change_reason = reason
        asset.save()


def _installed_on(point: MeteringPoint) -> list[InstrumentTransformer]:
    return list(InstrumentTransformer.objects.filter(metering_point=point, state=AssetState.INSTALLED))


def _transformer_errors(point: MeteringPoint, locked: list[InstrumentTransformer]) -> list[FieldError]:
    errors = []
    kinds = [t.kind for t in locked]
    if kinds.count("ct") > 1 or kinds.count("pt") > 1:
        # three-phase sets share one ratio; one representative row per kind is enough here
        ratios = {(t.kind, t.primary, t.secondary) for t in locked}
        if len({(k) for k, *_ in ratios}) != len(ratios):
            errors.append(FieldError("transformers", "CTs (or PTs) of one point must share one ratio"))
    present = {t.kind: t for t in _installed_on(point) if t.pk not in {x.pk for x in locked}}
    for kind in sorted(set(kinds) & set(present)):
        errors.append(
            FieldError(
                "transformers",
                f"{point.point_no} still has {kind.upper()} {present[kind].asset_no} installed: "
                "remove it first",
            )
        )
    return errors


def replace_transformers(
    *,
    actor: User | None,
    point: MeteringPoint,
    transformers: list[InstrumentTransformer],
    on: date,
    reason: str = "更换互感器",
) -> MeteringPoint:
    """Swap the point's CT and/or PT for `transformers` (the installed ones of the same kinds are
    removed), keeping the meter; the point's multiplier follows what is installed afterwards."""
    with transaction.atomic():
        locked = list(
            InstrumentTransformer.objects.select_for_update().filter(pk__in=[t.pk for t in transformers])
        )
        errors = [
            FieldError("transformers", f"{t.asset_no} is {t.state}, not in stock")
            for t in locked
            if t.state != AssetState.IN_STOCK
        ]
        if not locked:
            errors.append(FieldError("transformers", "give the new CT and/or PT"))
        if errors:
            raise UnableToInstall(errors)
        kinds = {t.kind for t in locked}
        for old in InstrumentTransformer.objects.select_for_update().filter(
            metering_point=point, state=AssetState.INSTALLED, kind__in=kinds
        ):
            old.state = AssetState.REMOVED
            old._history_user = actor
            old._change_reason = reason
            old.save()
            audit.record(actor=actor, action="transformer.remove", target=old, reason=reason)
        errors = _transformer_errors(point, locked)
        if errors:
            raise UnableToInstall(errors)
        _mount(locked, point=point, on=on, actor=actor, reason=reason)
        point = customer_services.set_multiplier(
            actor=actor, point=point, multiplier=point_multiplier(_installed_on(point)), reason=reason
        )
        audit.record(
            actor=actor,
            action="transformer.install",
            target=point,
            after={"transformers": [t.asset_no for t in locked], "multiplier": str(point.multiplier)},
            reason=reason,
        )
    return point


def remove(*, actor: User | None, meter: Meter, on: date, reason: str = "拆表") -> Meter:
    with transaction.atomic():
        meter = Meter.objects.select_for_update().get(pk=meter.pk)
        if meter.state != AssetState.INSTALLED:
            raise UnableToInstall([FieldError("meter", f"meter {meter.asset_no} is not installed")])
        meter.state = AssetState.REMOVED
        meter.removed_on = on
        meter._history_user = actor
        meter._change_reason = reason
        meter.save()
        audit.record(actor=actor, action="meter.remove", target=meter, reason=reason)
    return meter
