"""Reads of the customer file, always through the user's data scope. A row outside the scope does
not exist for that user (the caller answers 404, never 403)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from mmis.common.errors import NotFound
from mmis.customers import rules
from mmis.customers.crypto import cipher
from mmis.customers.models import Account, Customer, MeteringPoint, ServiceAddress, SupplyContract
from mmis.org.models import User
from mmis.org.scope import DataScope

__all__ = ["NotFound", "customer_file", "customers", "get_customer", "search"]


def customers(user: User) -> QuerySet[Customer]:
    return DataScope.for_user(user).filter(Customer.objects.all())


def get_customer(user: User, pk: int | str) -> Customer:
    try:
        return customers(user).select_related("org").get(pk=int(pk))
    except (Customer.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"customer {pk} not found") from None


def get_customer_by_no(user: User, customer_no: str) -> Customer:
    try:
        return customers(user).select_related("org").get(customer_no=customer_no)
    except Customer.DoesNotExist:
        raise NotFound(f"customer {customer_no} not found") from None


def metering_points(user: User) -> QuerySet[MeteringPoint]:
    return DataScope.for_user(user).filter(MeteringPoint.objects.all())


def get_metering_point(user: User, pk: int | str) -> MeteringPoint:
    try:
        return metering_points(user).select_related("customer", "org").get(pk=int(pk))
    except (MeteringPoint.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"metering point {pk} not found") from None


def contracts(user: User) -> QuerySet[SupplyContract]:
    return DataScope.for_user(user).filter(SupplyContract.objects.all())


@dataclass
class SearchHit:
    customer: Customer
    matched: str  # which field matched: customer_no, phone, id_number, meter, name, address
    address: str = ""


_MOBILE = re.compile(r"^1[3-9]\d{9}$")
MIN_SUBSTRING = 3


def search(user: User, text: str, *, limit: int = 50) -> list[SearchHit]:
    """Global customer search by number, phone, ID, meter asset number, name or address.

    Exact keys first (indexed equality / blind index), then name prefix, then substring of name
    and address (trigram-indexed on PostgreSQL). Always inside the data scope.
    """
    text = (text or "").strip()
    if not text:
        return []
    base = customers(user).select_related("org")
    hits: dict[int, SearchHit] = {}

    def add(qs: QuerySet[Customer], matched: str) -> None:
        for c in qs[: max(0, limit - len(hits))]:
            hits.setdefault(c.pk, SearchHit(c, matched))

    compact = re.sub(r"[\s\-]", "", text)
    if compact.isdigit():
        add(base.filter(customer_no=compact), "customer_no")
        if len(compact) >= 6 and len(hits) < limit:
            add(base.filter(customer_no__startswith=compact).order_by("customer_no"), "customer_no")
    phone = rules.normalise_phone(text)
    if _MOBILE.match(phone) or re.fullmatch(r"0\d{9,11}", phone):
        add(base.filter(phone_index=cipher().blind_index(phone)), "phone")
    if re.fullmatch(r"[0-9A-Za-z]{15,18}", compact):
        add(base.filter(id_number_index=cipher().blind_index(compact.upper())), "id_number")
    if re.fullmatch(r"[0-9A-Za-z]{6,24}", compact):
        from_meter = Q(metering_points__meters__asset_no=compact) | Q(
            metering_points__meters__comm_address=compact
        )
        add(base.filter(from_meter).distinct(), "meter")
    if len(hits) < limit and not compact.isdigit():
        add(base.filter(name__startswith=text).order_by("name", "customer_no"), "name")
        # Substrings need 3+ characters: that is what a trigram index can serve (a 2-character
        # substring would scan the whole table); shorter terms are served by the prefix search.
        # No ORDER BY here, so the database can stop at `limit` matches.
        if len(hits) < limit and len(text) >= MIN_SUBSTRING:
            add(base.filter(name__contains=text), "name")
        if len(hits) < limit and len(text) >= MIN_SUBSTRING:
            addr_ids = (
                DataScope.for_user(user)
                .filter(ServiceAddress.objects.filter(full_text__contains=text))
                .values_list("customer_id", flat=True)[:limit]
            )
            add(base.filter(pk__in=list(addr_ids)).order_by("customer_no"), "address")
    result = list(hits.values())[:limit]
    addresses = dict(
        ServiceAddress.objects.filter(customer_id__in=[h.customer.pk for h in result])
        .order_by("customer_id", "pk")
        .values_list("customer_id", "full_text")
    )
    for h in result:
        h.address = addresses.get(h.customer.pk, "")
    return result


@dataclass
class CustomerFile:
    """The 360° view of one customer, optionally as of a past moment."""

    customer: Customer
    addresses: list[ServiceAddress]
    accounts: list[Account]
    points: list[MeteringPoint]
    contracts: list[SupplyContract]
    meters: dict[int, list]  # metering point id → meters
    transformers: dict[int, list]
    as_of: datetime | None = None


def customer_file(user: User, pk: int | str, *, as_of: datetime | None = None) -> CustomerFile:
    from mmis.customers.history import file_as_of  # local: history builds on the same models

    customer = get_customer(user, pk)
    if as_of is not None:
        return file_as_of(customer, as_of)
    points = list(customer.metering_points.order_by("point_no"))
    meters: dict[int, list] = {p.pk: [] for p in points}
    transformers: dict[int, list] = {p.pk: [] for p in points}
    # assets sit above customers; read them through the reverse relations without importing them
    for p in points:
        meters[p.pk] = list(p.meters.all())
        transformers[p.pk] = list(p.transformers.all())
    return CustomerFile(
        customer=customer,
        addresses=list(customer.addresses.order_by("pk")),
        accounts=list(customer.accounts.order_by("pk")),
        points=points,
        contracts=list(customer.contracts.order_by("-pk")),
        meters=meters,
        transformers=transformers,
    )
