"""Use cases of 业扩报装 and 变更用电: publish the province's process definitions, accept an
application (check it against the customer file first, then start the work order)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.customers import rules as customer_rules
from mmis.customers import services as customer_services
from mmis.customers.models import Customer, MeteringPoint
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.services import effects as svc_effects
from mmis.services.commitments import COMMITMENTS
from mmis.services.definitions import DEFINITIONS
from mmis.workflow import rules as wf_rules
from mmis.workflow import services as wf
from mmis.workflow.models import ProcessDefinition, ProcessInstance

NEW_CONNECTIONS = ("lv_residential_new", "lv_nonresidential_new", "hv_new", "temporary_supply")
STAFF_ROLES = ("counter_staff", "manager", "administrator")


class UnableToApply(InvalidInput):
    pass


def install_definitions(
    *, actor: User | None, province: Org, at: datetime, effective_from: date, codes: list[str] | None = None
) -> list[ProcessDefinition]:
    """Publish the default definitions (with the §8.2 commitments) for a province. A code whose
    latest version already has the same spec is left alone."""
    out = []
    for code in codes or list(DEFINITIONS):
        spec = DEFINITIONS[code]
        latest = ProcessDefinition.objects.filter(org=province, code=code).order_by("-version").first()
        if latest is not None and latest.spec == spec:
            out.append(latest)
            continue
        c = COMMITMENTS[code]
        out.append(
            wf.publish_definition(
                actor=actor,
                org=province,
                code=code,
                name=c.name,
                spec=spec,
                effective_from=effective_from,
                at=at,
                category=c.category,
                number_prefix=c.prefix,
            )
        )
    return out


def start_form(definition: ProcessDefinition) -> tuple[wf_rules.FormField, ...]:
    return wf.parsed(definition).start_form


def _precheck(code: str, data: dict, org: Org, user: User, on: date) -> tuple[str, Customer | None]:
    """Check an application against the rules and the customer file before a work order exists.
    Returns the title and the customer it is about."""
    errors: list[FieldError] = []
    customer = None
    if code in NEW_CONNECTIONS:
        if org.level not in (Org.Level.STATION, Org.Level.COUNTY, Org.Level.SERVICE_HALL):
            errors.append(
                FieldError("org", "a connection is accepted for a county, a station or a service hall")
            )
        if data.get("customer_kind") and data.get("id_type"):
            customer_services.validate_identity(
                errors,
                kind=data["customer_kind"],
                id_type=data["id_type"],
                id_number=data.get("id_number", ""),
                prefix="data.",
            )
        if data.get("phone") and (r := customer_rules.check_phone(data["phone"])):
            errors.append(FieldError("data.phone", r))
        category = "residential" if code == "lv_residential_new" else data.get("usage_category", "")
        if code == "lv_nonresidential_new" and category == "residential":
            errors.append(FieldError("data.usage_category", "a residential connection has its own process"))
        cap = Decimal(data["capacity_kva"]) if data.get("capacity_kva") else None
        if cap is not None and (
            r := customer_rules.check_capacity(
                usage_category=category, voltage_level=data.get("voltage_level", ""), capacity_kva=cap
            )
        ):
            errors.append(FieldError("data.capacity_kva", r))
        if data.get("basic_charge_mode") == "demand_contract":
            demand = Decimal(data["contract_demand_kw"]) if data.get("contract_demand_kw") else None
            if demand is None:
                errors.append(
                    FieldError("data.contract_demand_kw", "is required for billing by contract demand")
                )
            elif cap and demand < cap * Decimal("0.40"):
                errors.append(
                    FieldError(
                        "data.contract_demand_kw",
                        f"must be at least 40 % of the capacity ({cap * Decimal('0.40')} kW)",
                    )
                )
        if code == "temporary_supply" and data.get("supply_until"):
            until = date.fromisoformat(data["supply_until"])
            if until <= on:
                errors.append(FieldError("data.supply_until", "must be after today"))
            elif (until - on).days > svc_effects.params.TEMPORARY_SUPPLY_MAX_DAYS:
                errors.append(
                    FieldError("data.supply_until", "temporary supply lasts at most 6 months unless extended")
                )
        title = f"{COMMITMENTS[code].name} {data.get('customer_name', '')} {data.get('capacity_kva', '')}kVA"
    else:
        customer = Customer.objects.filter(customer_no=data.get("customer_no", "")).first()
        scope = DataScope.for_user(user)
        if customer is None or (not scope.contains_org(customer.org) and user.has_role(*STAFF_ROLES)):
            raise UnableToApply([FieldError("data.customer_no", f"no customer {data.get('customer_no')}")])
        if customer.status != Customer.Status.ACTIVE:
            errors.append(FieldError("data.customer_no", f"customer {customer.customer_no} is closed"))
        point = None
        if data.get("point_no"):
            point = MeteringPoint.objects.filter(customer=customer, point_no=data["point_no"]).first()
            if point is None:
                errors.append(
                    FieldError(
                        "data.point_no", f"customer {customer.customer_no} has no point {data['point_no']}"
                    )
                )
        else:
            point = (
                MeteringPoint.objects.filter(customer=customer, role="main").exclude(status="closed").first()
            )
        if code == "suspension" and point is not None and data.get("start_on") and data.get("end_on"):
            errors += svc_effects.check_suspension(
                point,
                Decimal(data["suspended_kva"]) if data.get("suspended_kva") else None,
                date.fromisoformat(data["start_on"]),
                date.fromisoformat(data["end_on"]),
            )
        busy = ProcessInstance.objects.filter(
            subject_type="customers.customer",
            subject_id=str(customer.pk),
            state__in=[ProcessInstance.State.RUNNING, ProcessInstance.State.SUSPENDED],
            definition__code=code,
        ).first()
        if busy is not None:
            errors.append(
                FieldError("data.customer_no", f"work order {busy.number} of the same kind is still open")
            )
        title = f"{COMMITMENTS[code].name} {customer.customer_no} {customer.name}"
    if errors:
        raise UnableToApply(errors)
    return title, customer


def apply(
    *,
    actor: User,
    code: str,
    org: Org | None,
    data: dict[str, Any],
    at: datetime,
    applicant: User | None = None,
) -> ProcessInstance:
    """Accept an application: validate the acceptance form and the file, start the work order
    (the time limit runs from now)."""
    if code not in DEFINITIONS:
        raise NotFound(f"no process {code!r}")
    on = timezone.localtime(at).date()
    if org is None:
        customer = Customer.objects.filter(customer_no=(data or {}).get("customer_no", "")).first()
        if customer is None:
            raise UnableToApply([FieldError("org", "is required for a new connection")])
        org = customer.org
    definition = wf.resolve_definition(code=code, org=org, on=on)
    try:
        clean = wf_rules.clean_form(wf.parsed(definition).start_form, data or {}, prefix="data")
    except InvalidInput as exc:
        raise UnableToApply(exc.errors) from None
    title, customer = _precheck(code, clean, org, actor, on)
    with transaction.atomic():
        return wf.start_process(
            actor=actor,
            code=code,
            org=customer.org if customer is not None else org,
            title=title.strip(),
            data=clean,
            at=at,
            subject_type="customers.customer" if customer else "",
            subject_id=str(customer.pk) if customer else "",
            subject_repr=str(customer) if customer else clean.get("customer_name", ""),
            applicant=applicant,
            definition=definition,
        )
