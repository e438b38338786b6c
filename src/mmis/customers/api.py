"""API of the customer file: /api/v1/customers, metering points and supply contracts.
Everything is read through the caller's data scope: a row outside it answers 404."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.customers import history, queries, services
from mmis.customers.models import Customer, MeteringPoint, SupplyContract
from mmis.org.models import Org
from mmis.org.scope import DataScope

router = Router(tags=["customers"])

STAFF_WRITE_ROLES = ("counter_staff", "administrator", "manager")


def _require_write(request) -> None:
    if not request.user.has_role(*STAFF_WRITE_ROLES):
        raise HttpError(403, "your roles do not allow changing the customer file")


# --- schemas --------------------------------------------------------------------------------------
class AddressIn(Schema):
    region: str = Field(..., max_length=100, description="省市区县")
    street: str = Field("", max_length=100)
    detail: str = Field(..., max_length=200)
    postcode: str = Field("", max_length=6)


class CustomerIn(Schema):
    org_id: int = Field(..., description="station, county or service hall the customer belongs to")
    kind: str = Field(..., description="individual | organisation")
    name: str = Field(..., max_length=100)
    id_type: str = Field(..., description="resident_id | credit_code | passport | other")
    id_number: str = Field(..., max_length=30)
    phone: str = Field(..., max_length=20)
    contact_name: str = Field("", max_length=50)
    industry_code: str = Field("", max_length=10)
    customer_no: str | None = Field(None, max_length=16, description="leave empty to number automatically")
    opened_on: date | None = None
    payment_method: str = "counter"
    bank_name: str = Field("", max_length=60)
    bank_account: str = Field("", max_length=30)
    address: AddressIn


class CustomerPatch(Schema):
    name: str | None = Field(None, max_length=100)
    phone: str | None = Field(None, max_length=20)
    contact_name: str | None = Field(None, max_length=50)
    industry_code: str | None = Field(None, max_length=10)
    id_type: str | None = None
    id_number: str | None = Field(None, max_length=30)
    reason: str = Field(
        ..., min_length=1, max_length=200, description="why the file changes (kept in history)"
    )


class OrgRef(Schema):
    id: int
    code: str
    name: str


class CustomerSummary(Schema):
    id: int
    customer_no: str
    name: str
    kind: str
    status: str
    id_number_mask: str
    phone_mask: str
    org: OrgRef
    opened_on: date


class AddressOut(Schema):
    id: int
    region: str
    street: str
    detail: str
    full_text: str
    postcode: str


class AccountOut(Schema):
    id: int
    account_no: str
    name: str
    payment_method: str
    bank_name: str
    bank_account_mask: str


class MeterOut(Schema):
    id: int
    asset_no: str
    kind: str
    register_digits: int
    tou: bool
    state: str
    installed_on: date | None


class TransformerOut(Schema):
    id: int
    asset_no: str
    kind: str
    primary: Decimal
    secondary: Decimal


class PointOut(Schema):
    id: int
    point_no: str
    name: str
    usage_category: str
    voltage_level: str
    tariff_code: str
    reading_book_code: str
    multiplier: Decimal
    position: str
    tou: bool
    pf_standard: str
    basic_charge_mode: str
    contract_capacity_kva: Decimal
    operating_capacity_kva: Decimal
    contract_demand_kw: Decimal | None
    tier_persons: int
    prepaid: bool
    status: str
    meters: list[MeterOut] = []
    transformers: list[TransformerOut] = []


class ContractOut(Schema):
    id: int
    contract_no: str
    contract_type: str
    capacity_kva: Decimal
    signed_on: date | None
    effective_from: date | None
    expires_on: date | None
    state: str
    display_state: str


class CustomerDetail(CustomerSummary):
    contact_name: str
    industry_code: str
    addresses: list[AddressOut]
    accounts: list[AccountOut]
    metering_points: list[PointOut]
    contracts: list[ContractOut]
    as_of: datetime | None = None


class CustomerPage(Schema):
    items: list[CustomerSummary]
    count: int
    page: int
    page_size: int


class HistoryEntryOut(Schema):
    at: datetime
    what: str
    label: str
    kind: str
    user: str
    reason: str
    changes: list[list]


class PointIn(Schema):
    usage_category: str
    voltage_level: str
    contract_capacity_kva: Decimal
    name: str = Field("", max_length=100)
    tariff_code: str = Field("", max_length=20)
    reading_book_code: str = Field("", max_length=20)
    contract_demand_kw: Decimal | None = None
    pf_standard: str = ""
    basic_charge_mode: str = ""
    position: str = "boundary"
    tier_persons: int = Field(0, ge=0, le=99)
    tou: bool = False
    prepaid: bool = False


class ContractIn(Schema):
    contract_type: str
    capacity_kva: Decimal
    expires_on: date | None = None


class TransitionIn(Schema):
    on: date | None = None
    reason: str = Field("", max_length=200)


class CustomerFilters(Schema):
    q: str | None = Field(None, max_length=100, description="户号, name, phone, ID, meter or address")
    org_id: int | None = None
    status: str | None = None
    kind: str | None = None
    page: int = Field(1, ge=1)
    page_size: int = Field(20, ge=1, le=200)


# --- helpers ----------------------------------------------------------------------------------------
def _summary(c: Customer) -> dict:
    return {
        "id": c.pk,
        "customer_no": c.customer_no,
        "name": c.name,
        "kind": c.kind,
        "status": c.status,
        "id_number_mask": c.id_number_mask,
        "phone_mask": c.phone_mask,
        "org": {"id": c.org.pk, "code": c.org.code, "name": c.org.name},
        "opened_on": c.opened_on,
    }


def _detail(f: queries.CustomerFile) -> dict:
    today = timezone.localdate()
    c = f.customer
    org = Org.objects.get(pk=c.org_id)
    out = {
        "id": c.pk if hasattr(c, "pk") else c.id,
        "customer_no": c.customer_no,
        "name": c.name,
        "kind": c.kind,
        "status": c.status,
        "id_number_mask": c.id_number_mask,
        "phone_mask": c.phone_mask,
        "org": {"id": org.pk, "code": org.code, "name": org.name},
        "opened_on": c.opened_on,
        "contact_name": c.contact_name,
        "industry_code": c.industry_code,
        "addresses": [vars_of(a, AddressOut) for a in f.addresses],
        "accounts": [vars_of(a, AccountOut) for a in f.accounts],
        "metering_points": [
            {
                **vars_of(p, PointOut),
                "meters": [vars_of(m, MeterOut) for m in f.meters.get(p.pk, [])],
                "transformers": [vars_of(t, TransformerOut) for t in f.transformers.get(p.pk, [])],
            }
            for p in f.points
        ],
        "contracts": [
            {**vars_of(k, ContractOut), "display_state": services.contract_display_state(k, today=today)}
            for k in f.contracts
        ],
        "as_of": f.as_of,
    }
    return out


def vars_of(obj, schema) -> dict:
    return {name: getattr(obj, name) for name in schema.model_fields if hasattr(obj, name)}


def _org_in_scope(request, org_id: int) -> Org:
    org = DataScope.for_user(request.user).orgs().filter(pk=org_id).first()
    if org is None:
        raise InvalidInput(
            [FieldError("org_id", f"org {org_id} does not exist or is outside your data scope")]
        )
    return org


# --- endpoints ------------------------------------------------------------------------------------
@router.get("/customers", response=CustomerPage, summary="List or search customers in my scope")
def list_customers(request, filters: Query[CustomerFilters]):
    if filters.q:
        hits = queries.search(request.user, filters.q, limit=200)
        rows = [h.customer for h in hits]
        if filters.org_id:
            rows = [c for c in rows if c.org_id == filters.org_id]
        if filters.status:
            rows = [c for c in rows if c.status == filters.status]
        if filters.kind:
            rows = [c for c in rows if c.kind == filters.kind]
        count = len(rows)
        start = (filters.page - 1) * filters.page_size
        page_rows = rows[start : start + filters.page_size]
    else:
        qs = queries.customers(request.user).select_related("org").order_by("customer_no")
        if filters.org_id:
            org = DataScope.for_user(request.user).orgs().filter(pk=filters.org_id).first()
            if org is None:
                raise NotFound(f"org {filters.org_id} not found")
            qs = qs.filter(org__path__startswith=org.path)
        if filters.status:
            qs = qs.filter(status=filters.status)
        if filters.kind:
            qs = qs.filter(kind=filters.kind)
        count = qs.count()
        start = (filters.page - 1) * filters.page_size
        page_rows = list(qs[start : start + filters.page_size])
    return {
        "items": [_summary(c) for c in page_rows],
        "count": count,
        "page": filters.page,
        "page_size": filters.page_size,
    }


@router.post("/customers", response={201: CustomerDetail}, summary="Open a new customer file")
def create_customer(request, payload: CustomerIn):
    _require_write(request)
    org = _org_in_scope(request, payload.org_id)
    data = payload.dict(exclude={"org_id", "opened_on"})
    customer = services.create_customer(
        actor=request.user, org=org, data=data, opened_on=payload.opened_on or timezone.localdate()
    )
    return Status(201, _detail(queries.customer_file(request.user, customer.pk)))


@router.get("/customers/{customer_id}", response=CustomerDetail, summary="The whole customer file (360°)")
def get_customer(request, customer_id: int, as_of: datetime | None = None):
    return _detail(queries.customer_file(request.user, customer_id, as_of=as_of))


@router.patch("/customers/{customer_id}", response=CustomerDetail, summary="Change customer data (audited)")
def update_customer(request, customer_id: int, payload: CustomerPatch):
    _require_write(request)
    customer = queries.get_customer(request.user, customer_id)
    changes = payload.dict(exclude_unset=True, exclude={"reason"})
    if not changes:
        raise InvalidInput([FieldError("", "nothing to change: give at least one field")])
    services.update_customer(actor=request.user, customer=customer, changes=changes, reason=payload.reason)
    return _detail(queries.customer_file(request.user, customer_id))


@router.get(
    "/customers/{customer_id}/history",
    response=list[HistoryEntryOut],
    summary="Change history of the whole file, newest first",
)
def customer_history(request, customer_id: int):
    customer = queries.get_customer(request.user, customer_id)
    return [
        {
            "at": e.at,
            "what": e.what,
            "label": e.label,
            "kind": e.kind,
            "user": e.user,
            "reason": e.reason,
            "changes": [[f, str(o), str(n)] for f, o, n in e.changes],
        }
        for e in history.timeline(customer)
    ]


@router.post(
    "/customers/{customer_id}/metering-points", response={201: PointOut}, summary="Add a metering point"
)
def add_point(request, customer_id: int, payload: PointIn):
    _require_write(request)
    customer = queries.get_customer(request.user, customer_id)
    point = services.add_metering_point(actor=request.user, customer=customer, data=payload.dict())
    return Status(201, {**vars_of(point, PointOut), "meters": [], "transformers": []})


@router.get("/metering-points/{point_id}", response=PointOut, summary="One metering point")
def get_point(request, point_id: int):
    point: MeteringPoint = queries.get_metering_point(request.user, point_id)
    return {
        **vars_of(point, PointOut),
        "meters": [vars_of(m, MeterOut) for m in point.meters.all()],
        "transformers": [vars_of(t, TransformerOut) for t in point.transformers.all()],
    }


@router.post(
    "/customers/{customer_id}/contracts", response={201: ContractOut}, summary="Draft a supply contract"
)
def create_contract(request, customer_id: int, payload: ContractIn):
    _require_write(request)
    customer = queries.get_customer(request.user, customer_id)
    contract = services.create_contract(actor=request.user, customer=customer, data=payload.dict())
    return Status(201, {**vars_of(contract, ContractOut), "display_state": contract.state})


@router.post(
    "/contracts/{contract_id}/{transition}",
    response=ContractOut,
    summary="Contract state change: sign | make_effective | terminate",
)
def contract_transition(request, contract_id: int, transition: str, payload: TransitionIn):
    _require_write(request)
    contract = queries.contracts(request.user).filter(pk=contract_id).first()
    if contract is None:
        raise NotFound(f"contract {contract_id} not found")
    today = timezone.localdate()
    contract = services.change_contract_state(
        actor=request.user,
        contract=contract,
        transition=transition,
        on=payload.on or today,
        reason=payload.reason,
    )
    return {
        **vars_of(contract, ContractOut),
        "display_state": services.contract_display_state(contract, today=today),
    }


__all__ = ["SupplyContract", "router"]
