"""Reads of the receivables ledger, always through the user's data scope where a user is given."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Min, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Round, Substr

from mmis.accounts import rules
from mmis.accounts.models import (
    DEBT_KINDS,
    Allocation,
    Approval,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
)
from mmis.common.errors import FieldError, InvalidInput, NotFound
from mmis.common.money import ZERO, round_fen
from mmis.customers.models import Account
from mmis.org.models import Org, User
from mmis.org.scope import DataScope

MONEY = DecimalField(max_digits=16, decimal_places=2)


def accounts(user: User) -> QuerySet[Account]:
    return DataScope.for_user(user).filter(Account.objects.all())


def get_account(user: User, pk: int | str) -> Account:
    try:
        return accounts(user).select_related("customer", "org").get(pk=int(pk))
    except (Account.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"account {pk} not found") from None


def get_account_by_no(user: User, account_no: str) -> Account:
    """The account by its number if it lies inside the user's data scope (the scope is checked on
    the account's org path, so no list of org ids is loaded)."""
    acc = Account.objects.select_related("customer", "org").filter(account_no=str(account_no).strip()).first()
    if acc is None or not DataScope.for_user(user).contains_org(acc.org):
        raise NotFound(f"account {account_no} not found")
    return acc


def find_accounts(user: User, text: str, *, limit: int = 20) -> list[Account]:
    """By account number, customer number or name (the cashier's search box)."""
    text = (text or "").strip()
    if not text:
        return []
    qs = accounts(user).select_related("customer")
    if text.isdigit():
        hits = list(qs.filter(account_no=text)) or list(qs.filter(customer__customer_no=text))
        if hits:
            return hits[:limit]
    return list(qs.filter(name__icontains=text).order_by("account_no")[:limit])


def balance(account: Account | int) -> Decimal:
    """What the customer owes (positive) or holds as prepayment (negative): the sum of entries."""
    pk = account.pk if isinstance(account, Account) else account
    # round_fen here and below: SQLite sums decimals as floats
    return round_fen(LedgerEntry.objects.filter(account_id=pk).aggregate(t=Sum("amount"))["t"] or ZERO)


def prepayment(account: Account | int) -> Decimal:
    """Unallocated credit held for the account (预收)."""
    pk = account.pk if isinstance(account, Account) else account
    total = ZERO
    for amt, used in (
        LedgerEntry.objects.filter(account_id=pk, amount__lt=0)
        .annotate(used=Sum("allocations_out__amount"))
        .values_list("amount", "used")
    ):
        total += -amt - round_fen(used or ZERO)
    return total


@dataclass
class OpenItem:
    entry: LedgerEntry
    open: Decimal
    days_overdue: int
    accrued_fee: Decimal = ZERO

    @property
    def bucket(self) -> str:
        return rules.ageing_bucket(self.days_overdue)


def open_items(account: Account | int, *, on: date | None = None) -> list[OpenItem]:
    """Open debts (charges, debit adjustments, late fees), oldest due first, with the fee that
    would be charged if the whole item were paid on `on` (mmis.rating.late_fee)."""
    pk = account.pk if isinstance(account, Account) else account
    rows = (
        LedgerEntry.objects.filter(account_id=pk, kind__in=DEBT_KINDS)
        .annotate(paid=Coalesce(Sum("allocations_in__amount"), Value(ZERO), output_field=MONEY))
        .order_by("due_date", "id")
    )
    fee_before = set(
        LedgerEntry.objects.filter(account_id=pk, kind=EntryKind.LATE_FEE).values_list(
            "refers_to_id", flat=True
        )
    )
    out = []
    for e in rows:
        left = round_fen(e.amount - e.paid)
        if left <= 0:
            continue
        days = (on - e.due_date).days if on and e.due_date else 0
        fee = ZERO
        if on and e.kind != EntryKind.LATE_FEE and days > 0:
            d = rules.Debt(
                id=e.pk,
                open=left,
                due_date=e.due_date,
                late_fee_class=e.late_fee_class,
                fee_charged_before=e.pk in fee_before,
            )
            fee, _ = rules.fee_on(
                principal=left, debt=d, paid_on=on, minimum=Decimal("1.00"), minimum_scope="bill"
            )
        out.append(OpenItem(entry=e, open=left, days_overdue=max(days, 0), accrued_fee=fee))
    return out


@dataclass
class ArrearsRow:
    account_id: int
    account_no: str
    name: str
    org_id: int
    total: Decimal = ZERO
    oldest_due: date | None = None
    days: int = 0
    items: int = 0
    buckets: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    on_plan: bool = False

    @property
    def bucket(self) -> str:
        return rules.ageing_bucket(self.days)


def arrears_orgs(user: User) -> QuerySet[Org]:
    """The orgs whose arrears the user may report on (the arrears page's org picker)."""
    return DataScope.for_user(user).orgs().exclude(level=Org.Level.SERVICE_HALL).order_by("path")


ARREARS_ORDERS = {
    "amount": ("-total", "account__account_no"),
    "days": ("oldest", "-total", "account__account_no"),
    "account_no": ("account__account_no",),
}
# annotation names of the ageing buckets ("1-30" is not a valid name)
_BUCKET_KEYS = {b: "b_" + b.replace("-", "_").replace("+", "_up") for b in rules.AGEING_BUCKETS}


def _bucket_q(bucket: str, on: date, due_field: str) -> Q:
    """The due dates (`due_field`) that are `bucket` days overdue on `on`."""
    lo, hi = rules.ageing_bounds(bucket)
    q = Q()
    if lo is not None:
        q &= Q(**{f"{due_field}__lte": on - timedelta(days=lo)})
    if hi is not None:
        q &= Q(**{f"{due_field}__gte": on - timedelta(days=hi)})
    return q


def _check_arrears_filters(*, bucket: str, order: str) -> None:
    if bucket and bucket not in rules.AGEING_BUCKETS:
        raise InvalidInput(FieldError("bucket", f"unknown ageing bucket {bucket!r}"))
    if order not in ARREARS_ORDERS:
        raise InvalidInput(FieldError("order", f"unknown order {order!r}"))


def _overdue_debts(user: User | None, *, on: date, org, min_days: int, search: str) -> QuerySet[LedgerEntry]:
    """Open debts overdue on `on` by at least `min_days` (at least 1), annotated with `paid`."""
    paid = (
        Allocation.objects.filter(debit_id=OuterRef("pk"))
        .values("debit_id")
        .annotate(t=Sum("amount"))
        .values("t")
    )
    qs = LedgerEntry.objects.filter(kind__in=DEBT_KINDS, due_date__lte=on - timedelta(days=max(min_days, 1)))
    if user is not None:
        qs = DataScope.for_user(user).filter(qs)
    if org is not None:
        qs = qs.filter(org__path__startswith=org.path)
    search = (search or "").strip()
    if search:
        qs = qs.filter(
            Q(account__account_no__startswith=search)
            | Q(account__name__icontains=search)
            | Q(account__customer__name__icontains=search)
        )
    return qs.annotate(
        paid=Coalesce(Subquery(paid, output_field=MONEY), Value(ZERO), output_field=MONEY)
    ).filter(amount__gt=F("paid"))


def _money_sums(on: date) -> dict:
    """Open amount in total and per ageing bucket of the debt's own due date."""
    left = F("amount") - F("paid")
    sums = {"total": Sum(left, output_field=MONEY)}
    for b, key in _BUCKET_KEYS.items():
        sums[key] = Coalesce(
            Sum(left, filter=_bucket_q(b, on, "due_date"), output_field=MONEY),
            Value(ZERO),
            output_field=MONEY,
        )
    return sums


def _arrears_accounts(
    user: User | None,
    *,
    on: date,
    org=None,
    min_days: int = 1,
    min_amount: Decimal = ZERO,
    search: str = "",
    bucket: str = "",
):
    """One row per account in arrears (GROUP BY account): total, oldest due date, item count and
    amount per bucket; `min_amount` on the account's total, `bucket` on its oldest debt."""
    qs = (
        _overdue_debts(user, on=on, org=org, min_days=min_days, search=search)
        .values("account_id", "account__account_no", "account__name", "account__org_id")
        .annotate(oldest=Min("due_date"), items=Count("id"), **_money_sums(on))
    )
    if min_amount > 0:
        qs = qs.filter(total__gte=min_amount)
    if bucket:
        qs = qs.filter(_bucket_q(bucket, on, "oldest"))
    return qs


def arrears(
    user: User | None,
    *,
    on: date,
    org=None,
    min_days: int = 1,
    min_amount: Decimal = ZERO,
    search: str = "",
    bucket: str = "",
    order: str = "amount",
    offset: int = 0,
    limit: int | None = None,
) -> list[ArrearsRow]:
    """Accounts with debts overdue on `on` by at least `min_days`, with ageing buckets; set-based
    (one grouped query, sorted and paged in the database), by amount unless `order` says
    "days" (oldest debt first) or "account_no". `search`: account number prefix, or account or
    customer name containing it; `bucket`: the bucket of the account's oldest overdue debt;
    `min_amount`: on the account's total; `org`: its subtree."""
    _check_arrears_filters(bucket=bucket, order=order)
    qs = _arrears_accounts(
        user, on=on, org=org, min_days=min_days, min_amount=min_amount, search=search, bucket=bucket
    ).order_by(*ARREARS_ORDERS[order])
    if limit is not None:
        qs = qs[offset : offset + limit]
    elif offset:
        qs = qs[offset:]
    out = []
    for e in qs:
        r = ArrearsRow(e["account_id"], e["account__account_no"], e["account__name"], e["account__org_id"])
        r.total = round_fen(e["total"])  # SQLite sums decimals as floats
        r.oldest_due = e["oldest"]
        r.days = (on - e["oldest"]).days
        r.items = e["items"]
        for b, key in _BUCKET_KEYS.items():
            v = round_fen(e[key] or ZERO)
            if v:
                r.buckets[b] = v
        out.append(r)
    on_plan = set(
        Approval.objects.filter(
            account_id__in=[r.account_id for r in out],
            kind__in=[Approval.Kind.INSTALMENT, Approval.Kind.DEFERRAL],
            state=Approval.State.APPROVED,
            valid_until__gte=on,
        ).values_list("account_id", flat=True)
    )
    for r in out:
        r.on_plan = r.account_id in on_plan
    return out


@dataclass
class ArrearsTotals:
    accounts: int
    total: Decimal
    ageing: dict[str, Decimal]


def _totals(agg: dict) -> tuple[Decimal, dict[str, Decimal]]:
    return (
        round_fen(agg["total"] or ZERO),
        {b: round_fen(agg[key] or ZERO) for b, key in _BUCKET_KEYS.items()},
    )


def arrears_totals(
    user: User | None,
    *,
    on: date,
    org=None,
    min_days: int = 1,
    min_amount: Decimal = ZERO,
    search: str = "",
    bucket: str = "",
) -> ArrearsTotals:
    """Count, total and ageing (by each debt's own due date) of every account `arrears` lists
    with the same filters, not one page of them: one query."""
    _check_arrears_filters(bucket=bucket, order="amount")
    qs = _arrears_accounts(
        user, on=on, org=org, min_days=min_days, min_amount=min_amount, search=search, bucket=bucket
    )
    agg = qs.aggregate(
        n=Count("account_id"), total_=Sum("total"), **{f"{k}_": Sum(k) for k in _BUCKET_KEYS.values()}
    )
    total, ageing = _totals({k.rstrip("_"): v for k, v in agg.items()})
    return ArrearsTotals(accounts=agg["n"] or 0, total=total, ageing=ageing)


class ArrearsList:
    """The filtered arrears list as a sequence for Django's Paginator: counted once, each page
    fetched with its own LIMIT/OFFSET query."""

    def __init__(self, user: User | None, *, totals: ArrearsTotals, **filters) -> None:
        self.user = user
        self.totals = totals
        self.filters = filters

    def count(self) -> int:
        return self.totals.accounts

    def __len__(self) -> int:
        return self.totals.accounts

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise TypeError("ArrearsList takes slices only")
        start = key.start or 0
        stop = self.totals.accounts if key.stop is None else key.stop
        return arrears(self.user, offset=start, limit=max(stop - start, 0), **self.filters)


@dataclass
class OrgAgeing:
    org: Org
    own: bool  # the accounts sitting directly on the chosen org, not on a child
    accounts: int
    total: Decimal
    ageing: dict[str, Decimal]


def ageing_by_org(
    user: User | None,
    *,
    on: date,
    org: Org,
    min_days: int = 1,
    min_amount: Decimal = ZERO,
    search: str = "",
    bucket: str = "",
) -> tuple[list[OrgAgeing], OrgAgeing]:
    """The arrears of `org` by direct child org (each child's subtree), plus a row of the
    accounts sitting on `org` itself when there are any, and a totals row; the same filters as
    `arrears`, so the totals row equals `arrears_totals`. Amounts by each debt's own age."""
    _check_arrears_filters(bucket=bucket, order="amount")
    debts = _overdue_debts(user, on=on, org=org, min_days=min_days, search=search)
    if min_amount > 0 or bucket:
        kept = _arrears_accounts(
            user, on=on, org=org, min_days=min_days, min_amount=min_amount, search=search, bucket=bucket
        ).values("account_id")
        debts = debts.filter(account_id__in=kept)
    width = len(org.path) + org.steplen
    sums = {"accounts": Count("account_id", distinct=True), **_money_sums(on)}
    grouped = {
        e["child"]: e
        for e in debts.annotate(child=Substr("org__path", 1, width)).values("child").annotate(**sums)
    }
    children = {
        o.path: o
        for o in Org.objects.filter(path__startswith=org.path, depth=org.depth + 1).order_by("path")
        if o.level != Org.Level.SERVICE_HALL or o.path in grouped
    }
    children.update(
        {o.path: o for o in Org.objects.filter(path__in=[p for p in grouped if p not in children])}
    )

    def row(o: Org, own: bool, e: dict | None) -> OrgAgeing:
        total, ageing = _totals(e) if e else (ZERO, {b: ZERO for b in rules.AGEING_BUCKETS})
        return OrgAgeing(org=o, own=own, accounts=e["accounts"] if e else 0, total=total, ageing=ageing)

    rows = []
    if org.path in grouped:
        rows.append(row(org, True, grouped[org.path]))
    rows += [row(o, False, grouped.get(p)) for p, o in sorted(children.items()) if p != org.path]
    totals = row(org, False, debts.aggregate(**sums))
    return rows, totals


def ageing_summary(rows: list[ArrearsRow]) -> dict[str, Decimal]:
    out = {b: ZERO for b in rules.AGEING_BUCKETS}
    for r in rows:
        for b, v in r.buckets.items():
            out[b] += v
    return out


@dataclass
class StatementLine:
    entry: LedgerEntry
    debit: Decimal
    credit: Decimal
    running: Decimal


def statement(account: Account, *, start: date | None = None, end: date | None = None) -> dict:
    """Account statement over [start, end): opening balance, entries, closing balance."""
    qs = LedgerEntry.objects.filter(account=account).order_by("posted_at", "id")
    opening = ZERO
    if start:
        opening = round_fen(qs.filter(business_date__lt=start).aggregate(t=Sum("amount"))["t"] or ZERO)
        qs = qs.filter(business_date__gte=start)
    if end:
        qs = qs.filter(business_date__lt=end)
    running = opening
    lines = []
    for e in qs.select_related("refers_to"):
        running += e.amount
        lines.append(
            StatementLine(e, e.amount if e.amount > 0 else ZERO, -e.amount if e.amount < 0 else ZERO, running)
        )
    return {
        "account": account,
        "start": start,
        "end": end,
        "opening": opening,
        "lines": lines,
        "closing": running,
        "debits": sum((x.debit for x in lines), ZERO),
        "credits": sum((x.credit for x in lines), ZERO),
    }


def payments(user: User) -> QuerySet[Payment]:
    return DataScope.for_user(user).filter(Payment.objects.all())


def get_payment(user: User, pk: int | str) -> Payment:
    try:
        return (
            payments(user).select_related("entry", "account", "account__customer", "session").get(pk=int(pk))
        )
    except (Payment.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"payment {pk} not found") from None


# --- invariants (tests and the benchmark check these) --------------------------------------------
def ledger_check() -> dict[str, int | bool | str]:
    """Every entry balanced (its lines sum to zero and its receivable line equals its amount),
    no allocation over-settles a debit or over-uses a credit, and balances equal the lines."""
    unbalanced = (
        LedgerLine.objects.values("entry_id").annotate(t=Round(Sum("amount"), 2)).exclude(t=0).count()
    )
    recv = (
        LedgerLine.objects.filter(gl="receivable")
        .values("entry_id")
        .annotate(t=Round(Sum("amount"), 2))
        .filter(t=F("entry__amount"))
        .count()
    )
    entries = LedgerEntry.objects.count()
    over_debit = (
        Allocation.objects.values("debit_id")
        .annotate(t=Round(Sum("amount"), 2))
        .filter(t__gt=F("debit__amount"))
        .count()
    )
    over_credit = (
        Allocation.objects.values("credit_id")
        .annotate(t=Round(Sum("amount"), 2))
        .filter(t__gt=-F("credit__amount"))
        .count()
    )
    negative = (
        Allocation.objects.values("debit_id").annotate(t=Round(Sum("amount"), 2)).filter(t__lt=0).count()
    )
    total_entries = round_fen(LedgerEntry.objects.aggregate(t=Sum("amount"))["t"] or ZERO)
    total_recv = round_fen(LedgerLine.objects.filter(gl="receivable").aggregate(t=Sum("amount"))["t"] or ZERO)
    ok = (
        unbalanced == 0
        and recv == entries
        and over_debit == 0
        and over_credit == 0
        and negative == 0
        and total_entries == total_recv
    )
    return {
        "entries": entries,
        "unbalanced_entries": unbalanced,
        "receivable_mismatch": entries - recv,
        "over_settled_debits": over_debit,
        "over_used_credits": over_credit,
        "negative_allocations": negative,
        "total_receivable": str(total_recv),
        "balanced": ok,
    }
