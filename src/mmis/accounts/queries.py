"""Reads of the receivables ledger, always through the user's data scope where a user is given."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import DecimalField, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Round

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
from mmis.common.errors import NotFound
from mmis.common.money import ZERO, round_fen
from mmis.customers.models import Account
from mmis.org.models import User
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


def arrears(
    user: User | None,
    *,
    on: date,
    org=None,
    min_days: int = 1,
    min_amount: Decimal = ZERO,
    limit: int | None = None,
) -> list[ArrearsRow]:
    """Accounts with debts overdue on `on` by at least `min_days`, with ageing buckets; set-based
    (one query for the open debts), ordered by amount."""
    paid = (
        Allocation.objects.filter(debit_id=OuterRef("pk"))
        .values("debit_id")
        .annotate(t=Sum("amount"))
        .values("t")
    )
    qs = LedgerEntry.objects.filter(kind__in=DEBT_KINDS, due_date__lt=on)
    if user is not None:
        qs = DataScope.for_user(user).filter(qs)
    if org is not None:
        qs = qs.filter(org__path__startswith=org.path)
    qs = qs.annotate(
        paid=Coalesce(Subquery(paid, output_field=MONEY), Value(ZERO), output_field=MONEY)
    ).filter(amount__gt=F("paid"))
    rows: dict[int, ArrearsRow] = {}
    for e in qs.values(
        "account_id", "account__account_no", "account__name", "org_id", "amount", "paid", "due_date"
    ):
        days = (on - e["due_date"]).days
        if days < min_days:
            continue
        r = rows.get(e["account_id"])
        if r is None:
            r = rows[e["account_id"]] = ArrearsRow(
                e["account_id"], e["account__account_no"], e["account__name"], e["org_id"]
            )
        left = round_fen(e["amount"] - e["paid"])  # SQLite sums decimals as floats
        r.total += left
        r.items += 1
        r.buckets[rules.ageing_bucket(days)] += left
        if r.oldest_due is None or e["due_date"] < r.oldest_due:
            r.oldest_due = e["due_date"]
            r.days = days
    on_plan = set(
        Approval.objects.filter(
            account_id__in=list(rows),
            kind__in=[Approval.Kind.INSTALMENT, Approval.Kind.DEFERRAL],
            state=Approval.State.APPROVED,
            valid_until__gte=on,
        ).values_list("account_id", flat=True)
    )
    out = [r for r in rows.values() if r.total >= min_amount]
    for r in out:
        r.on_plan = r.account_id in on_plan
    out.sort(key=lambda r: (-r.total, r.account_no))
    return out[:limit] if limit else out


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
