"""Use cases of the customer file. Each is one transaction, validates every field first (so nothing
is half-written), keeps the change history and writes an audit record."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.db.models import F

from mmis.common.errors import FieldError, InvalidInput
from mmis.customers import rules
from mmis.customers.crypto import cipher
from mmis.customers.models import (
    Account,
    Customer,
    MeteringPoint,
    NumberSequence,
    ServiceAddress,
    SupplyContract,
    UsageCategory,
    VoltageLevel,
)
from mmis.org import audit
from mmis.org.models import Org, User


class UnableToChangeContract(InvalidInput):
    pass


# --- numbering ----------------------------------------------------------------------------------
PREFIXES = {"customer": "31", "account": "61", "point": "71", "contract": "GD"}
WIDTHS = {"customer": 8, "account": 8, "point": 8, "contract": 10}


def next_number(name: str) -> str:
    """Next running number (must be called inside a transaction)."""
    seq, _ = NumberSequence.objects.select_for_update().get_or_create(name=name)
    value = seq.next_value
    NumberSequence.objects.filter(pk=name).update(next_value=F("next_value") + 1)
    return f"{PREFIXES[name]}{value:0{WIDTHS[name]}d}"


def reserve_numbers(name: str, count: int) -> int:
    """Reserve `count` running numbers at once (bulk loads); returns the first value."""
    with transaction.atomic():
        seq, _ = NumberSequence.objects.select_for_update().get_or_create(name=name)
        first = seq.next_value
        NumberSequence.objects.filter(pk=name).update(next_value=first + count)
    return first


# --- validation ---------------------------------------------------------------------------------
def _text(
    errors: list[FieldError], data: dict, key: str, path: str, *, required: bool, max_length: int
) -> str:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(FieldError(path, "is required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(path, "must be text"))
        return ""
    value = value.strip()
    if len(value) > max_length:
        errors.append(FieldError(path, f"is too long: at most {max_length} characters, got {len(value)}"))
        return ""
    return value


def _choice(
    errors: list[FieldError], data: dict, key: str, path: str, choices, *, required: bool = True
) -> str:
    value = data.get(key)
    if value in (None, ""):
        if required:
            errors.append(FieldError(path, "is required"))
        return ""
    if value not in choices.values:
        errors.append(
            FieldError(path, f"unknown value {value!r}; expected one of: {', '.join(choices.values)}")
        )
        return ""
    return value


def _decimal(
    errors: list[FieldError], data: dict, key: str, path: str, *, required: bool, min_value=Decimal(0)
):
    value = data.get(key)
    if value in (None, ""):
        if required:
            errors.append(FieldError(path, "is required"))
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        errors.append(FieldError(path, f"{value!r} is not a number"))
        return None
    if not d.is_finite():
        errors.append(FieldError(path, "must be a finite number"))
        return None
    if d < min_value:
        errors.append(
            FieldError(path, "must not be negative" if min_value == 0 else f"must be at least {min_value}")
        )
        return None
    return d


def validate_identity(
    errors: list[FieldError], *, kind: str, id_type: str, id_number: str, prefix: str = ""
) -> None:
    p = f"{prefix}id_number"
    if kind == Customer.Kind.INDIVIDUAL and id_type == Customer.IdType.CREDIT_CODE:
        errors.append(FieldError(f"{prefix}id_type", "an individual identifies with a personal document"))
    if kind == Customer.Kind.ORGANISATION and id_type == Customer.IdType.RESIDENT_ID:
        errors.append(
            FieldError(f"{prefix}id_type", "an organisation identifies with its unified social credit code")
        )
    if not id_number:
        return
    if id_type == Customer.IdType.RESIDENT_ID:
        reason = rules.check_resident_id(id_number)
    elif id_type == Customer.IdType.CREDIT_CODE:
        reason = rules.check_credit_code(id_number)
    else:
        reason = None if 4 <= len(id_number) <= 30 else "must be 4 to 30 characters"
    if reason:
        errors.append(FieldError(p, reason))


def _identity_fields(id_number: str, phone: str) -> dict[str, str]:
    c = cipher()
    idn = id_number.strip().upper()
    ph = rules.normalise_phone(phone) if phone else ""
    return {
        "id_number_enc": c.encrypt(idn),
        "id_number_index": c.blind_index(idn),
        "id_number_mask": rules.mask_id_number(idn),
        "phone_enc": c.encrypt(ph),
        "phone_index": c.blind_index(ph),
        "phone_mask": rules.mask_phone(ph),
    }


def _address_fields(errors: list[FieldError], data: Any, path: str) -> dict[str, str]:
    if not isinstance(data, dict):
        errors.append(FieldError(path, "is required: region and detail of the service address"))
        return {}
    region = _text(errors, data, "region", f"{path}.region", required=True, max_length=100)
    street = _text(errors, data, "street", f"{path}.street", required=False, max_length=100)
    detail = _text(errors, data, "detail", f"{path}.detail", required=True, max_length=200)
    postcode = _text(errors, data, "postcode", f"{path}.postcode", required=False, max_length=6)
    if postcode and not postcode.isdigit():
        errors.append(FieldError(f"{path}.postcode", "a postcode is 6 digits"))
    return {
        "region": region,
        "street": street,
        "detail": detail,
        "postcode": postcode,
        "full_text": f"{region}{street}{detail}",
    }


# --- customers ----------------------------------------------------------------------------------
def create_customer(*, actor: User | None, org: Org, data: dict[str, Any], opened_on: date) -> Customer:
    """New customer with its service address and billing account.

    `data`: kind, name, id_type, id_number, phone, contact_name?, industry_code?, customer_no?,
    address {region, street?, detail, postcode?}, payment_method?, bank_name?, bank_account?.
    """
    errors: list[FieldError] = []
    kind = _choice(errors, data, "kind", "kind", Customer.Kind)
    name = _text(errors, data, "name", "name", required=True, max_length=100)
    id_type = _choice(errors, data, "id_type", "id_type", Customer.IdType)
    id_number = _text(errors, data, "id_number", "id_number", required=True, max_length=30)
    phone = _text(errors, data, "phone", "phone", required=True, max_length=20)
    contact_name = _text(errors, data, "contact_name", "contact_name", required=False, max_length=50)
    industry_code = _text(errors, data, "industry_code", "industry_code", required=False, max_length=10)
    customer_no = _text(errors, data, "customer_no", "customer_no", required=False, max_length=16)
    payment_method = (
        _choice(errors, data, "payment_method", "payment_method", Account.PaymentMethod, required=False)
        or Account.PaymentMethod.COUNTER
    )
    bank_name = _text(errors, data, "bank_name", "bank_name", required=False, max_length=60)
    bank_account = _text(errors, data, "bank_account", "bank_account", required=False, max_length=30)
    if kind and id_type:
        validate_identity(errors, kind=kind, id_type=id_type, id_number=id_number)
    if phone and (reason := rules.check_phone(phone)):
        errors.append(FieldError("phone", reason))
    if customer_no and not customer_no.isdigit():
        errors.append(FieldError("customer_no", "a customer number is digits only"))
    elif customer_no and Customer.objects.filter(customer_no=customer_no).exists():
        errors.append(FieldError("customer_no", f"customer number {customer_no} is already used"))
    if payment_method == Account.PaymentMethod.BANK_WITHHOLDING and not bank_account:
        errors.append(FieldError("bank_account", "is required for bank withholding"))
    if bank_account and not bank_account.replace(" ", "").isdigit():
        errors.append(FieldError("bank_account", "a bank account number is digits only"))
    address = _address_fields(errors, data.get("address"), "address")
    if org.level not in (Org.Level.STATION, Org.Level.COUNTY, Org.Level.SERVICE_HALL):
        errors.append(FieldError("org", "customers belong to a county, a station or a service hall"))
    if errors:
        raise InvalidInput(errors)

    with transaction.atomic():
        number = customer_no or next_number("customer")
        customer = Customer(
            org=org,
            customer_no=number,
            kind=kind,
            name=name,
            id_type=id_type,
            contact_name=contact_name,
            industry_code=industry_code,
            opened_on=opened_on,
            **_identity_fields(id_number, phone),
        )
        customer._history_user = actor
        customer.save()
        addr = ServiceAddress(org=org, customer=customer, **address)
        addr._history_user = actor
        addr.save()
        c = cipher()
        account = Account(
            org=org,
            customer=customer,
            account_no=next_number("account"),
            name=name,
            payment_method=payment_method,
            bank_name=bank_name,
            bank_account_enc=c.encrypt(bank_account.replace(" ", "")),
            bank_account_mask=rules.mask_id_number(bank_account.replace(" ", "")) if bank_account else "",
        )
        account._history_user = actor
        account.save()
        audit.record(
            actor=actor,
            action="customer.create",
            target=customer,
            after={**audit.snapshot(customer), "address": address, "account_no": account.account_no},
        )
    return customer


EDITABLE_CUSTOMER_FIELDS = ("name", "phone", "contact_name", "industry_code", "id_type", "id_number")


def update_customer(
    *, actor: User | None, customer: Customer, changes: dict[str, Any], reason: str = ""
) -> Customer:
    unknown = sorted(set(changes) - set(EDITABLE_CUSTOMER_FIELDS))
    errors: list[FieldError] = [FieldError(k, "cannot be changed here") for k in unknown]
    if customer.status == Customer.Status.CLOSED:
        errors.append(FieldError("status", "a closed customer cannot be changed"))
    updates: dict[str, Any] = {}
    if "name" in changes:
        updates["name"] = _text(errors, changes, "name", "name", required=True, max_length=100)
    if "contact_name" in changes:
        updates["contact_name"] = _text(
            errors, changes, "contact_name", "contact_name", required=False, max_length=50
        )
    if "industry_code" in changes:
        updates["industry_code"] = _text(
            errors, changes, "industry_code", "industry_code", required=False, max_length=10
        )
    phone = None
    if "phone" in changes:
        phone = _text(errors, changes, "phone", "phone", required=True, max_length=20)
        if phone and (r := rules.check_phone(phone)):
            errors.append(FieldError("phone", r))
    id_number = None
    if "id_number" in changes or "id_type" in changes:
        id_type = _choice(
            errors, {**{"id_type": customer.id_type}, **changes}, "id_type", "id_type", Customer.IdType
        )
        id_number = _text(errors, changes, "id_number", "id_number", required=True, max_length=30)
        if id_type:
            validate_identity(errors, kind=customer.kind, id_type=id_type, id_number=id_number)
            updates["id_type"] = id_type
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        before = audit.snapshot(locked)
        c = cipher()
        if phone is not None:
            ph = rules.normalise_phone(phone)
            updates.update(
                phone_enc=c.encrypt(ph), phone_index=c.blind_index(ph), phone_mask=rules.mask_phone(ph)
            )
        if id_number is not None:
            idn = id_number.upper()
            updates.update(
                id_number_enc=c.encrypt(idn),
                id_number_index=c.blind_index(idn),
                id_number_mask=rules.mask_id_number(idn),
            )
        for k, v in updates.items():
            setattr(locked, k, v)
        locked._history_user = actor
        locked._change_reason = reason
        locked.save()
        b, a = audit.diff(before, audit.snapshot(locked))
        if phone is not None:
            a["phone"] = "changed"
        if id_number is not None:
            a["id_number"] = "changed"
        audit.record(actor=actor, action="customer.update", target=locked, before=b, after=a, reason=reason)
    return locked


def reveal_identity(*, actor: User, customer: Customer, reason: str) -> dict[str, str]:
    """Decrypt ID number and phone for an authorised user; the look is audited."""
    if not reason.strip():
        raise InvalidInput([FieldError("reason", "say why you need to see the full number")])
    c = cipher()
    with transaction.atomic():
        audit.record(actor=actor, action="customer.reveal_identity", target=customer, reason=reason)
    return {"id_number": c.decrypt(customer.id_number_enc), "phone": c.decrypt(customer.phone_enc)}


# --- metering points ----------------------------------------------------------------------------
def add_metering_point(*, actor: User | None, customer: Customer, data: dict[str, Any]) -> MeteringPoint:
    errors: list[FieldError] = []
    usage_category = _choice(errors, data, "usage_category", "usage_category", UsageCategory)
    voltage_level = _choice(errors, data, "voltage_level", "voltage_level", VoltageLevel)
    name = _text(errors, data, "name", "name", required=False, max_length=100)
    tariff_code = _text(errors, data, "tariff_code", "tariff_code", required=False, max_length=20)
    book = _text(errors, data, "reading_book_code", "reading_book_code", required=False, max_length=20)
    capacity = _decimal(errors, data, "contract_capacity_kva", "contract_capacity_kva", required=True)
    demand = _decimal(errors, data, "contract_demand_kw", "contract_demand_kw", required=False)
    pf_standard = _choice(
        errors, data, "pf_standard", "pf_standard", MeteringPoint.PfStandard, required=False
    )
    mode = _choice(
        errors, data, "basic_charge_mode", "basic_charge_mode", MeteringPoint.BasicChargeMode, required=False
    )
    position = (
        _choice(errors, data, "position", "position", MeteringPoint.Position, required=False) or "boundary"
    )
    persons = data.get("tier_persons", 0)
    if not isinstance(persons, int) or isinstance(persons, bool) or not 0 <= persons <= 99:
        errors.append(FieldError("tier_persons", "must be a whole number from 0 to 99"))
        persons = 0
    if (
        capacity is not None
        and usage_category
        and voltage_level
        and (
            r := rules.check_capacity(
                usage_category=usage_category, voltage_level=voltage_level, capacity_kva=capacity
            )
        )
    ):
        errors.append(FieldError("contract_capacity_kva", r))
    if mode == MeteringPoint.BasicChargeMode.DEMAND_CONTRACT:
        if demand is None:
            errors.append(FieldError("contract_demand_kw", "is required for billing by contract demand"))
        elif capacity and demand < capacity * Decimal("0.40"):
            errors.append(
                FieldError(
                    "contract_demand_kw",
                    f"must be at least 40 % of the capacity ({capacity * Decimal('0.40')} kW)",
                )
            )
    if mode and usage_category == UsageCategory.RESIDENTIAL:
        errors.append(FieldError("basic_charge_mode", "residential supply has no basic charge"))
    address = customer.addresses.order_by("pk").first()
    account = customer.accounts.order_by("pk").first()
    if address is None or account is None:
        errors.append(FieldError("customer", "the customer has no service address or account"))
    if customer.status == Customer.Status.CLOSED:
        errors.append(FieldError("customer", "the customer is closed"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        point = MeteringPoint(
            org=customer.org,
            customer=customer,
            account=account,
            address=address,
            point_no=next_number("point"),
            name=name or customer.name,
            usage_category=usage_category,
            voltage_level=voltage_level,
            tariff_code=tariff_code,
            reading_book_code=book,
            contract_capacity_kva=capacity,
            operating_capacity_kva=capacity,
            contract_demand_kw=demand,
            pf_standard=pf_standard,
            basic_charge_mode=mode,
            position=position,
            tier_persons=persons,
            tou=bool(data.get("tou", False)),
            prepaid=bool(data.get("prepaid", False)),
        )
        point._history_user = actor
        point.save()
        audit.record(actor=actor, action="metering_point.create", target=point, after=audit.snapshot(point))
    return point


def set_multiplier(
    *, actor: User | None, point: MeteringPoint, multiplier: Decimal, reason: str
) -> MeteringPoint:
    """Called by the metering installation service when CT/PT change."""
    if multiplier <= 0:
        raise InvalidInput([FieldError("multiplier", "must be greater than 0")])
    with transaction.atomic():
        locked = MeteringPoint.objects.select_for_update().get(pk=point.pk)
        before = {"multiplier": str(locked.multiplier)}
        locked.multiplier = multiplier
        locked._history_user = actor
        locked._change_reason = reason
        locked.save()
        audit.record(
            actor=actor,
            action="metering_point.multiplier",
            target=locked,
            before=before,
            after={"multiplier": str(multiplier)},
            reason=reason,
        )
    return locked


# --- supply contracts (state machine) ------------------------------------------------------------
CONTRACT_TRANSITIONS = {
    "sign": ({SupplyContract.State.DRAFT}, SupplyContract.State.SIGNED),
    "make_effective": ({SupplyContract.State.SIGNED}, SupplyContract.State.EFFECTIVE),
    "terminate": (
        {SupplyContract.State.SIGNED, SupplyContract.State.EFFECTIVE},
        SupplyContract.State.TERMINATED,
    ),
}


def create_contract(*, actor: User | None, customer: Customer, data: dict[str, Any]) -> SupplyContract:
    errors: list[FieldError] = []
    contract_type = _choice(errors, data, "contract_type", "contract_type", SupplyContract.Type)
    capacity = _decimal(errors, data, "capacity_kva", "capacity_kva", required=True)
    if capacity is not None and capacity <= 0:
        errors.append(FieldError("capacity_kva", "must be greater than 0"))
    expires_on = data.get("expires_on")
    if expires_on is not None and not isinstance(expires_on, date):
        try:
            expires_on = date.fromisoformat(str(expires_on))
        except ValueError:
            errors.append(FieldError("expires_on", "must be a date YYYY-MM-DD"))
            expires_on = None
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        contract = SupplyContract(
            org=customer.org,
            customer=customer,
            contract_no=next_number("contract"),
            contract_type=contract_type,
            capacity_kva=capacity,
            expires_on=expires_on,
        )
        contract._history_user = actor
        contract.save()
        audit.record(actor=actor, action="contract.create", target=contract, after=audit.snapshot(contract))
    return contract


def change_contract_state(
    *, actor: User | None, contract: SupplyContract, transition: str, on: date, reason: str = ""
) -> SupplyContract:
    if transition not in CONTRACT_TRANSITIONS:
        raise UnableToChangeContract([FieldError("transition", f"unknown transition {transition!r}")])
    allowed, target = CONTRACT_TRANSITIONS[transition]
    with transaction.atomic():
        locked = SupplyContract.objects.select_for_update().get(pk=contract.pk)
        if locked.state not in allowed:
            raise UnableToChangeContract(
                [FieldError("state", f"contract {locked.contract_no} is {locked.state}; cannot {transition}")]
            )
        before = locked.state
        locked.state = target
        if transition == "sign":
            locked.signed_on = on
        elif transition == "make_effective":
            locked.effective_from = on
        else:
            locked.terminated_on = on
        locked._history_user = actor
        locked._change_reason = reason
        locked.save()
        audit.record(
            actor=actor,
            action=f"contract.{transition}",
            target=locked,
            before={"state": before},
            after={"state": target},
            reason=reason,
        )
    return locked


def contract_display_state(contract: SupplyContract, *, today: date, warn_days: int = 60) -> str:
    """'expiring' is derived: an effective contract within `warn_days` of its expiry."""
    if (
        contract.state == SupplyContract.State.EFFECTIVE
        and contract.expires_on
        and (contract.expires_on - today).days <= warn_days
    ):
        return "expiring"
    return contract.state
