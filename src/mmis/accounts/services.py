"""Use cases of the receivables ledger. Each is one transaction that validates everything first,
locks the customer account row (select_for_update) so that two postings on one account never
interleave, writes balanced append-only entries and an audit record.

Public API used by other apps: `post_charge`, `post_charges` (many at once), `post_adjustment`,
`take_payment`, `request_approval` / `decide_approval` (reversal, refund, instalment, deferral, write-off),
`reverse_payment`, `transfer_prepayment`, `open_session` / `close_session` / `lock_day`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, Sum
from django.utils import timezone

from mmis.accounts import rules
from mmis.accounts.models import (
    CHANNEL_GL,
    COUNTER_CHANNELS,
    DEBT_KINDS,
    GL,
    Allocation,
    Approval,
    CashierSession,
    Channel,
    ChargeLine,
    DayLock,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
    Policy,
    PrepaidAccount,
)
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.money import ZERO, money_str, round_fen
from mmis.customers.models import Account, Customer, MeteringPoint, UsageCategory
from mmis.org import audit
from mmis.org.models import Org, User

MAX_AMOUNT = Decimal("999999999999.99")


class UnableToPost(InvalidInput):
    """A ledger document could not be posted (bad amount, account, state)."""


class UnableToTakePayment(InvalidInput):
    pass


class UnableToReverse(InvalidInput):
    pass


class UnableToDecide(InvalidInput):
    pass


class UnableToCloseDay(InvalidInput):
    pass


class IdempotencyConflict(InvalidInput):
    """The same Idempotency-Key was used before with a different request."""


# --- helpers ------------------------------------------------------------------------------------
_PLAIN_NUMBER = re.compile(r"\+?[0-9]+(\.[0-9]*)?|\+?\.[0-9]+")
_SIGNED_NUMBER = re.compile(r"-[0-9]+(\.[0-9]*)?|-\.[0-9]+")


def parse_amount(value: Any, path: str = "amount", *, allow_zero: bool = False) -> Decimal:
    """A money amount from input: a number with at most two decimals, positive (never a float)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput(path=path, errors="is required")
    if isinstance(value, bool):
        raise InvalidInput(path=path, errors="must be a number")
    if isinstance(value, float):
        value = repr(value)
    text = str(value).strip()
    if isinstance(value, str) and not _PLAIN_NUMBER.fullmatch(text):
        # money is written as digits with an optional point: no exponent, sign or spaces inside
        if _SIGNED_NUMBER.fullmatch(text):
            raise InvalidInput(path=path, errors="must be greater than zero")
        raise InvalidInput(path=path, errors=f"{value!r} is not a number (write it like 120.50)")
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        raise InvalidInput(path=path, errors=f"{value!r} is not a number") from None
    if not d.is_finite():
        raise InvalidInput(path=path, errors="must be a finite number")
    if d != d.quantize(Decimal("0.01")):
        raise InvalidInput(path=path, errors="money has at most two decimals (fen)")
    if d < 0 or (d == 0 and not allow_zero):
        raise InvalidInput(path=path, errors="must be greater than zero")
    if d > MAX_AMOUNT:
        raise InvalidInput(path=path, errors="is too large")
    return d.quantize(Decimal("0.01"))


def local_date(at: datetime) -> date:
    return timezone.localtime(at).date() if timezone.is_aware(at) else at.date()


def new_number(prefix: str, on: date) -> str:
    return f"{prefix}{on:%Y%m%d}{secrets.token_hex(5).upper()}"


# Org policies change rarely and are read by every payment: a per-process cache, dropped when a
# Policy row is saved or deleted in this process (signals in apps.py) and at most POLICY_TTL old
# for changes made by other processes. An entry is stored only once the transaction that read it
# has committed, so a rolled-back read (e.g. a test's own transaction) never reaches the cache.
POLICY_TTL = 60.0
_policy_cache: dict[tuple[int, str], tuple[float, Policy]] = {}
_policy_lock = threading.Lock()
_policy_generation = [0]


def clear_policy_cache(**_kwargs: Any) -> None:
    with _policy_lock:
        _policy_generation[0] += 1
        _policy_cache.clear()


def _load_policy(org: Org) -> Policy:
    rows = {
        p.org.path: p for p in Policy.objects.select_related("org").filter(org__path__in=org.ancestor_paths())
    }
    for path in org.ancestor_paths():
        if path in rows:
            return rows[path]
    return Policy(org=org)


def policy_for(org: Org) -> Policy:
    """The nearest policy up the org tree (an unsaved default when none is configured)."""
    key = (org.pk, org.path)
    now = time.monotonic()
    hit = _policy_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    generation = _policy_generation[0]
    pol = _load_policy(org)

    def store() -> None:
        with _policy_lock:
            if _policy_generation[0] == generation:
                _policy_cache[key] = (time.monotonic() + POLICY_TTL, pol)

    if connection.in_atomic_block:
        transaction.on_commit(store)
    else:
        store()
    return pol


def late_fee_class(account: Account) -> str:
    cats = set(account.metering_points.values_list("usage_category", flat=True))
    if cats:
        return "residential" if cats == {UsageCategory.RESIDENTIAL} else "non_residential"
    kind = Customer.objects.filter(pk=account.customer_id).values_list("kind", flat=True).first()
    return "residential" if kind == Customer.Kind.INDIVIDUAL else "non_residential"


def _lock(account: Account | int) -> Account:
    """Lock the account row (FOR NO KEY UPDATE of that row only: two postings on one account
    serialise, while the org row joined for the policy stays unlocked, and foreign-key checks of
    other inserts referencing the account are not blocked). `has_prepaid` comes with it."""
    pk = account.pk if isinstance(account, Account) else account
    return (
        Account.objects.select_for_update(of=("self",), no_key=True)
        .select_related("org")
        .annotate(has_prepaid=Exists(PrepaidAccount.objects.filter(account_id=OuterRef("pk"))))
        .get(pk=pk)
    )


def _post(
    *,
    account: Account,
    kind: str,
    amount: Decimal,
    other_gl: str,
    at: datetime,
    document_no: str,
    actor: User | None,
    due_date: date | None = None,
    source_type: str = "",
    source_id: int | None = None,
    reverses: LedgerEntry | None = None,
    refers_to: LedgerEntry | None = None,
    origin: LedgerEntry | None = None,
    late_fee_class: str = "",
    memo: str = "",
    business_date: date | None = None,
) -> LedgerEntry:
    """One balanced entry: receivable line of the account (+debit / −credit) and its other side."""
    entry = LedgerEntry(
        org_id=account.org_id,
        account=account,
        kind=kind,
        document_no=document_no,
        amount=amount,
        due_date=due_date,
        business_date=business_date or local_date(at),
        posted_at=at,
        source_type=source_type,
        source_id=source_id,
        reverses=reverses,
        refers_to=refers_to,
        origin=origin,
        late_fee_class=late_fee_class,
        actor=actor if actor is not None and actor.pk else None,
        memo=memo[:200],
    )
    entry.save()
    LedgerLine.objects.bulk_create(
        [
            LedgerLine(entry=entry, account=account, gl=GL.RECEIVABLE, amount=amount),
            LedgerLine(entry=entry, account=None, gl=other_gl, amount=-amount),
        ]
    )
    return entry


def _debts(account: Account, *, on: date | None = None) -> list[rules.Debt]:
    """Open debts of an account (locked by the caller), with what the allocation needs."""
    rows = list(
        LedgerEntry.objects.filter(account=account, kind__in=DEBT_KINDS)
        .annotate(paid=Sum("allocations_in__amount"))
        .values("id", "kind", "amount", "paid", "due_date", "refers_to_id", "late_fee_class")
    )
    open_rows = [r for r in rows if r["amount"] - (r["paid"] or ZERO) > 0]
    if not open_rows:
        return []
    ids = [r["id"] for r in open_rows if r["kind"] != EntryKind.LATE_FEE]
    fee_info: dict[int, date] = {}
    waived_ids: set[int] = set()
    plan_active = False
    # Late-fee facts (fees charged before, waivers, instalment/deferral plans) only matter for a
    # debt overdue on `on`: a payment on time skips these queries (on=None: always loaded).
    overdue = on is None or any(
        r["due_date"] is not None and r["due_date"] < on for r in open_rows if r["kind"] != EntryKind.LATE_FEE
    )
    if overdue and ids:
        fee_info = {
            r["refers_to_id"]: r["last"]
            for r in LedgerEntry.objects.filter(kind=EntryKind.LATE_FEE, refers_to_id__in=ids)
            .values("refers_to_id")
            .annotate(last=Max("business_date"))
        }
    if overdue:
        for kind, target_id, valid_until in Approval.objects.filter(
            account=account,
            state=Approval.State.APPROVED,
            kind__in=[Approval.Kind.LATE_FEE_WAIVER, Approval.Kind.INSTALMENT, Approval.Kind.DEFERRAL],
        ).values_list("kind", "target_id", "valid_until"):
            if kind == Approval.Kind.LATE_FEE_WAIVER:
                waived_ids.add(target_id)
            elif on is not None and valid_until is not None and valid_until >= on:
                # an approved instalment plan or deferral suspends the fee unless the org's policy
                # charges it during plans (DOMAIN §5.4)
                plan_active = not policy_for(account.org).late_fee_during_plan
    out = []
    for r in open_rows:
        is_fee = r["kind"] == EntryKind.LATE_FEE
        out.append(
            rules.Debt(
                id=r["id"],
                open=r["amount"] - (r["paid"] or ZERO),
                due_date=r["due_date"],
                is_late_fee=is_fee,
                parent_id=r["refers_to_id"] if is_fee else None,
                late_fee_class="" if is_fee else r["late_fee_class"],
                fee_charged_before=r["id"] in fee_info,
                fee_through=fee_info.get(r["id"]),
                waived=r["id"] in waived_ids or plan_active,
            )
        )
    return out


def _open_credits(account: Account) -> list[tuple[int, Decimal]]:
    """(entry id, unallocated amount) of the account's credits, oldest first."""
    rows = (
        LedgerEntry.objects.filter(account=account, amount__lt=0)
        .annotate(used=Sum("allocations_out__amount"))
        .order_by("posted_at", "id")
        .values_list("id", "amount", "used")
    )
    return [(pk, -amt - (used or ZERO)) for pk, amt, used in rows if -amt - (used or ZERO) > 0]


def _apply_plan(
    *, account: Account, credit: LedgerEntry, plan: rules.Plan, at: datetime, actor: User | None
) -> list[LedgerEntry]:
    fees: dict[int, LedgerEntry] = {}
    for debt_id, fee, days in plan.fees:
        fees[debt_id] = _post(
            account=account,
            kind=EntryKind.LATE_FEE,
            amount=fee,
            other_gl=GL.LATE_FEE_INCOME,
            at=at,
            document_no=new_number("WYJ", local_date(at)),
            actor=actor,
            due_date=credit.business_date,
            refers_to=LedgerEntry(pk=debt_id),
            origin=credit,
            memo=f"违约金 {days} 天",
        )
    allocs = []
    for (what, pk), component, amount in plan.allocations:
        debit_id = fees[pk].pk if what == "fee" else pk
        allocs.append(
            Allocation(
                account=account,
                credit=credit,
                debit_id=debit_id,
                component=component,
                amount=amount,
                at=at,
                by_entry=credit,
            )
        )
    Allocation.objects.bulk_create(allocs)
    return list(fees.values())


def _apply_open_credits(*, account: Account, at: datetime, by_entry: LedgerEntry) -> None:
    """Use prepayments and other unallocated credits on open debts, oldest first (no late fee:
    the money was there before the debt fell due)."""
    credits = _open_credits(account)
    if not credits:
        return
    debts = _debts(account)
    if not debts:
        return
    allocs = []
    for credit_id, avail in credits:
        plan = rules.plan_payment(amount=avail, debts=debts, paid_on=local_date(at), charge_late_fees=False)
        used: dict[int, Decimal] = defaultdict(Decimal)
        for (_what, pk), component, amount in plan.allocations:
            allocs.append(
                Allocation(
                    account=account,
                    credit_id=credit_id,
                    debit_id=pk,
                    component=component,
                    amount=amount,
                    at=at,
                    by_entry=by_entry,
                )
            )
            used[pk] += amount
        debts = [
            rules.Debt(**{**_debt_dict(d), "open": d.open - used[d.id]})
            for d in debts
            if d.open - used[d.id] > 0
        ]
        if not debts:
            break
    Allocation.objects.bulk_create(allocs)


def _debt_dict(d: rules.Debt) -> dict[str, Any]:
    return {s: getattr(d, s) for s in rules.Debt.__slots__}


def _consume_credits(*, account: Account, debit: LedgerEntry, amount: Decimal, at: datetime) -> None:
    """Settle a new debit (refund, transfer out, reversal) from the account's open credits."""
    left = amount
    allocs = []
    for credit_id, avail in _open_credits(account):
        if left <= 0:
            break
        take = min(avail, left)
        allocs.append(
            Allocation(account=account, credit_id=credit_id, debit=debit, amount=take, at=at, by_entry=debit)
        )
        left -= take
    Allocation.objects.bulk_create(allocs)


def available_credit(account: Account) -> Decimal:
    return sum((a for _pk, a in _open_credits(account)), ZERO)


# --- charges ------------------------------------------------------------------------------------
def post_charge(
    *,
    account: Account,
    amount: Decimal,
    source_type: str,
    source_id: int,
    document_no: str,
    due_date: date,
    at: datetime,
    actor: User | None,
    lines: list[dict] | None = None,
    kind: str = EntryKind.CHARGE,
    memo: str = "",
) -> LedgerEntry:
    """Post a released bill (or an opening balance) as a receivable; idempotent on
    (source_type, source_id): posting the same source again returns the first entry.

    `lines`: optional breakdown, e.g. [{"code": "principal", "category": "residential",
    "amount": "120.00"}]; they must add up to `amount`. Open prepayments are applied at once.
    """
    errors: list[FieldError] = []
    try:
        amount = parse_amount(amount, "amount")
    except InvalidInput as exc:
        errors += exc.errors
    if not source_type:
        errors.append(FieldError("source_type", "is required"))
    if source_id is None:
        errors.append(FieldError("source_id", "is required"))
    if not document_no:
        errors.append(FieldError("document_no", "is required"))
    if due_date is None:
        errors.append(FieldError("due_date", "is required"))
    if kind not in (EntryKind.CHARGE, EntryKind.ADJUSTMENT_DEBIT):
        errors.append(FieldError("kind", "a charge is a charge or a debit adjustment"))
    parsed_lines = []
    for i, ln in enumerate(lines or []):
        try:
            parsed_lines.append(
                (
                    str(ln.get("code") or "principal")[:40],
                    str(ln.get("category") or "")[:30],
                    parse_amount(ln.get("amount"), f"lines[{i}].amount", allow_zero=True),
                )
            )
        except InvalidInput as exc:
            errors += exc.errors
    if not errors and parsed_lines and sum(a for _c, _k, a in parsed_lines) != amount:
        errors.append(FieldError("lines", "the lines do not add up to the amount"))
    if errors:
        raise UnableToPost(errors)
    existing = LedgerEntry.objects.filter(source_type=source_type, source_id=source_id).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            acc = _lock(account)
            existing = LedgerEntry.objects.filter(source_type=source_type, source_id=source_id).first()
            if existing is not None:
                return existing
            entry = _post(
                account=acc,
                kind=kind,
                amount=amount,
                other_gl=GL.REVENUE,
                at=at,
                document_no=document_no,
                actor=actor,
                due_date=due_date,
                source_type=source_type,
                source_id=source_id,
                late_fee_class=late_fee_class(acc),
                memo=memo,
            )
            if parsed_lines:
                ChargeLine.objects.bulk_create(
                    [ChargeLine(entry=entry, code=c, category=k, amount=a) for c, k, a in parsed_lines]
                )
            _apply_open_credits(account=acc, at=at, by_entry=entry)
            audit.record(
                actor=actor,
                action="ledger.charge",
                target=entry,
                after={"account": acc.account_no, "amount": amount, "document_no": document_no},
                at=at,
            )
    except IntegrityError:
        existing = LedgerEntry.objects.filter(source_type=source_type, source_id=source_id).first()
        if existing is None:
            raise
        return existing
    return entry


@dataclass(frozen=True, slots=True)
class ChargeItem:
    """One charge for `post_charges`: the same arguments as `post_charge` takes for one."""

    account: Account | int
    amount: Decimal
    source_type: str
    source_id: int
    document_no: str
    due_date: date
    lines: list[dict] | None = None
    kind: str = EntryKind.CHARGE
    memo: str = ""


def _check_charge(
    item: ChargeItem, prefix: str
) -> tuple[Decimal, list[tuple[str, str, Decimal]], list[FieldError]]:
    """post_charge's validation of one item (paths under `prefix`)."""
    errors: list[FieldError] = []
    amount = item.amount
    try:
        amount = parse_amount(item.amount, f"{prefix}amount")
    except InvalidInput as exc:
        errors += exc.errors
    if not item.source_type:
        errors.append(FieldError(f"{prefix}source_type", "is required"))
    if item.source_id is None:
        errors.append(FieldError(f"{prefix}source_id", "is required"))
    if not item.document_no:
        errors.append(FieldError(f"{prefix}document_no", "is required"))
    if item.due_date is None:
        errors.append(FieldError(f"{prefix}due_date", "is required"))
    if item.kind not in (EntryKind.CHARGE, EntryKind.ADJUSTMENT_DEBIT):
        errors.append(FieldError(f"{prefix}kind", "a charge is a charge or a debit adjustment"))
    parsed: list[tuple[str, str, Decimal]] = []
    for i, ln in enumerate(item.lines or []):
        try:
            parsed.append(
                (
                    str(ln.get("code") or "principal")[:40],
                    str(ln.get("category") or "")[:30],
                    parse_amount(ln.get("amount"), f"{prefix}lines[{i}].amount", allow_zero=True),
                )
            )
        except InvalidInput as exc:
            errors += exc.errors
    if not errors and parsed and sum(a for _c, _k, a in parsed) != amount:
        errors.append(FieldError(f"{prefix}lines", "the lines do not add up to the amount"))
    return amount, parsed, errors


def _late_fee_classes(account_ids: list[int]) -> dict[int, str]:
    """`late_fee_class` of many accounts in two queries."""
    cats: dict[int, set[str]] = defaultdict(set)
    for acc_id, cat in (
        MeteringPoint.objects.filter(account_id__in=account_ids)
        .values_list("account_id", "usage_category")
        .distinct()
    ):
        cats[acc_id].add(cat)
    out = {
        a: ("residential" if c == {UsageCategory.RESIDENTIAL} else "non_residential") for a, c in cats.items()
    }
    missing = [a for a in account_ids if a not in out]
    if missing:
        for acc_id, kind in Account.objects.filter(pk__in=missing).values_list("pk", "customer__kind"):
            out[acc_id] = "residential" if kind == Customer.Kind.INDIVIDUAL else "non_residential"
    return out


def _accounts_with_open_credit(account_ids: list[int]) -> set[int]:
    """Accounts among these holding an unallocated credit (prepayment), in one query."""
    rows = (
        LedgerEntry.objects.filter(account_id__in=account_ids, amount__lt=0)
        .annotate(used=Sum("allocations_out__amount"))
        .values_list("account_id", "amount", "used")
    )
    return {acc_id for acc_id, amt, used in rows if -amt - (used or ZERO) > 0}


def post_charges(*, items: list[ChargeItem], at: datetime, actor: User | None) -> int:
    """Post many charges in ONE transaction, set-based; the ledger ends exactly as after one
    `post_charge` per item (same entries, lines, charge lines, late-fee class). Idempotent on
    (source_type, source_id): sources already posted (or repeated in `items`) are skipped.
    Accounts holding prepayment take the per-entry path so their credits are applied to each new
    charge as `post_charge` does. One audit record for the batch. Returns how many were posted."""
    errors: list[FieldError] = []
    checked = []
    for i, item in enumerate(items):
        amount, parsed, errs = _check_charge(item, f"items[{i}].")
        errors += errs
        checked.append((item, amount, parsed))
    if errors:
        raise UnableToPost(errors)
    if not checked:
        return 0
    account_ids = sorted(
        {it.account.pk if isinstance(it.account, Account) else it.account for it, _a, _p in checked}
    )
    who = actor if actor is not None and actor.pk else None
    with transaction.atomic():
        locked = {
            a.pk: a
            for a in Account.objects.select_for_update(of=("self",), no_key=True)
            .select_related("org")
            .filter(pk__in=account_ids)
            .order_by("pk")  # always in id order: no deadlock with another batch
        }
        unknown = [
            FieldError(f"items[{i}].account", "no such account")
            for i, (it, _a, _p) in enumerate(checked)
            if (it.account.pk if isinstance(it.account, Account) else it.account) not in locked
        ]
        if unknown:
            raise UnableToPost(unknown)
        q = Q()
        for st, ids in _group_sources(it for it, _a, _p in checked).items():
            q |= Q(source_type=st, source_id__in=ids)
        seen = set(LedgerEntry.objects.filter(q).values_list("source_type", "source_id"))
        todo = []
        for it, amount, parsed in checked:
            key = (it.source_type, it.source_id)
            if key in seen:
                continue
            seen.add(key)
            todo.append((it, amount, parsed))
        if not todo:
            return 0
        todo_accounts = sorted(
            {it.account.pk if isinstance(it.account, Account) else it.account for it, _a, _p in todo}
        )
        classes = _late_fee_classes(todo_accounts)
        with_credit = _accounts_with_open_credit(todo_accounts)
        business_date = local_date(at)
        bulk, single = [], []
        for it, amount, parsed in todo:
            acc = locked[it.account.pk if isinstance(it.account, Account) else it.account]
            entry = LedgerEntry(
                org_id=acc.org_id,
                account=acc,
                kind=it.kind,
                document_no=it.document_no,
                amount=amount,
                due_date=it.due_date,
                business_date=business_date,
                posted_at=at,
                source_type=it.source_type,
                source_id=it.source_id,
                late_fee_class=classes[acc.pk],
                actor=who,
                memo=it.memo[:200],
            )
            (single if acc.pk in with_credit else bulk).append((entry, parsed))
        LedgerEntry.objects.bulk_create([e for e, _p in bulk], batch_size=1000)
        for entry, _p in single:  # few: prepayment applied to each new charge in turn
            entry.save()
            _apply_open_credits(account=entry.account, at=at, by_entry=entry)
        pairs = bulk + single
        LedgerLine.objects.bulk_create(
            [
                ln
                for e, _p in pairs
                for ln in (
                    LedgerLine(entry=e, account=e.account, gl=GL.RECEIVABLE, amount=e.amount),
                    LedgerLine(entry=e, account=None, gl=GL.REVENUE, amount=-e.amount),
                )
            ],
            batch_size=1000,
        )
        ChargeLine.objects.bulk_create(
            [ChargeLine(entry=e, code=c, category=k, amount=a) for e, parsed in pairs for c, k, a in parsed],
            batch_size=1000,
        )
        total = sum((e.amount for e, _p in pairs), ZERO)
        orgs = {e.org_id for e, _p in pairs}
        audit.record(
            actor=actor,
            action="ledger.charges",
            target_type=LedgerEntry._meta.label_lower,
            target_id=str(min(e.pk for e, _p in pairs)),
            org=locked[pairs[0][0].account_id].org if len(orgs) == 1 else None,
            after={"count": len(pairs), "total": total, "prepayment_applied": len(single)},
            at=at,
        )
    return len(pairs)


def _group_sources(items: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for it in items:
        out[it.source_type].append(it.source_id)
    return out


def post_adjustment(
    *,
    account: Account,
    original: LedgerEntry | None,
    direction: str,
    amount: Decimal,
    reason: str,
    source_type: str,
    source_id: int,
    document_no: str,
    at: datetime,
    actor: User | None,
    due_date: date | None = None,
    lines: list[dict] | None = None,
) -> LedgerEntry:
    """A correction document (退补): `direction` "debit" (补收, a new debt with its own due date)
    or "credit" (退费, settles the original first, then the oldest debts; the rest is prepayment).
    Idempotent on (source_type, source_id). The original is never touched."""
    errors: list[FieldError] = []
    if direction not in ("debit", "credit"):
        errors.append(FieldError("direction", "is debit or credit"))
    try:
        amount = parse_amount(amount, "amount")
    except InvalidInput as exc:
        errors += exc.errors
    if not reason:
        errors.append(FieldError("reason", "is required"))
    if original is not None and original.account_id != account.pk:
        errors.append(FieldError("original", "belongs to another account"))
    if direction == "debit" and due_date is None:
        errors.append(FieldError("due_date", "is required for a debit"))
    if errors:
        raise UnableToPost(errors)
    if direction == "debit":
        entry = post_charge(
            account=account,
            amount=amount,
            source_type=source_type,
            source_id=source_id,
            document_no=document_no,
            due_date=due_date,
            at=at,
            actor=actor,
            lines=lines,
            kind=EntryKind.ADJUSTMENT_DEBIT,
            memo=reason,
        )
        if original is not None and entry.refers_to_id is None:
            pass  # refers_to is recorded in the memo/audit; the debit is its own document
        return entry
    existing = LedgerEntry.objects.filter(source_type=source_type, source_id=source_id).first()
    if existing is not None:
        return existing
    with transaction.atomic():
        acc = _lock(account)
        entry = _post(
            account=acc,
            kind=EntryKind.ADJUSTMENT_CREDIT,
            amount=-amount,
            other_gl=GL.REVENUE,
            at=at,
            document_no=document_no,
            actor=actor,
            source_type=source_type,
            source_id=source_id,
            refers_to=original,
            memo=reason,
        )
        _settle_credit(account=acc, credit=entry, amount=amount, at=at, actor=actor, designated=original)
        audit.record(
            actor=actor,
            action="ledger.adjustment",
            target=entry,
            after={"amount": -amount, "refers_to": original.pk if original else None},
            reason=reason,
            at=at,
        )
    return entry


def _settle_credit(
    *,
    account: Account,
    credit: LedgerEntry,
    amount: Decimal,
    at: datetime,
    actor: User | None,
    designated: LedgerEntry | None = None,
    charge_late_fees: bool = False,
) -> rules.Plan:
    pol = policy_for(account.org)
    on = local_date(at)
    plan = rules.plan_payment(
        amount=amount,
        debts=_debts(account, on=on),
        paid_on=on,
        order=pol.allocation_order,
        minimum=pol.late_fee_minimum,
        minimum_scope=pol.minimum_scope,
        charge_late_fees=charge_late_fees,
        designated=designated.pk if designated is not None else None,
        basis=pol.late_fee_basis,
    )
    _apply_plan(account=account, credit=credit, plan=plan, at=at, actor=actor)
    return plan


# --- payments -----------------------------------------------------------------------------------
def take_payment(
    *,
    account: Account,
    amount: Any,
    channel: str,
    at: datetime,
    actor: User | None,
    session: CashierSession | None = None,
    channel_txn_id: str = "",
    idempotency_key: str | None = None,
    request_hash: str = "",
    designated: LedgerEntry | None = None,
    require_open: bool = False,
    reference: str = "",
) -> Payment:
    """Post a payment and allocate it oldest debt first (late fees per the org's policy); the rest
    stays as prepayment. Idempotent: the same `idempotency_key` (with the same request) or the same
    (channel, channel_txn_id) returns the payment already posted.

    `designated` (+ `require_open`): the payer pays this bill; with `require_open` a bill that is
    already settled (e.g. by another cashier a moment ago) is refused and nothing is posted.
    """
    errors: list[FieldError] = []
    try:
        amount = parse_amount(amount, "amount")
    except InvalidInput as exc:
        errors += exc.errors
    if channel not in Channel.values:
        errors.append(FieldError("channel", f"unknown channel {channel!r}"))
    if account is None or not getattr(account, "pk", None):
        errors.append(FieldError("account", "unknown account"))
    if channel in COUNTER_CHANNELS:
        if session is None:
            errors.append(FieldError("session", "open a cashier session first"))
        elif session.state != CashierSession.State.OPEN:
            errors.append(FieldError("session", "the cashier session is closed"))
        elif actor is not None and session.cashier_id != actor.pk:
            errors.append(FieldError("session", "this is another cashier's session"))
    if designated is not None and account is not None and designated.account_id != account.pk:
        errors.append(FieldError("bill", "belongs to another account"))
    if errors:
        raise UnableToTakePayment(errors)
    business_date = session.business_date if session is not None else local_date(at)
    try:
        with transaction.atomic():
            # The replay check runs once, under the account lock (a replay is rare; the API has
            # already answered most of them before calling here).
            acc = _lock(account)
            found = _existing_payment(channel, channel_txn_id, idempotency_key, request_hash)
            if found is not None:
                return found
            if session is not None:
                s = (
                    CashierSession.objects.select_for_update()
                    .annotate(
                        day_locked=Exists(
                            DayLock.objects.filter(
                                org_id=OuterRef("org_id"), business_date=OuterRef("business_date")
                            )
                        )
                    )
                    .get(pk=session.pk)
                )
                if s.state != CashierSession.State.OPEN:
                    raise UnableToTakePayment(path="session", errors="the cashier session is closed")
                if s.day_locked:
                    raise UnableToTakePayment(path="session", errors="this business day is locked")
            if designated is not None and require_open:
                debts = {d.id: d for d in _debts(acc)}
                if designated.pk not in debts:
                    raise UnableToTakePayment(
                        path="bill", errors=f"bill {designated.document_no} is already settled"
                    )
            payment = _post_payment(
                account=acc,
                amount=amount,
                channel=channel,
                at=at,
                actor=actor,
                session=session,
                business_date=business_date,
                channel_txn_id=channel_txn_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                reference=reference,
                designated=designated,
            )
            if acc.has_prepaid:
                from mmis.accounts import collection  # cost control sits above the ledger

                collection.after_payment(account_id=acc.pk, at=at)
            audit.record(
                actor=actor,
                action="payment.take",
                target=payment.entry,
                after={
                    "account": acc.account_no,
                    "amount": amount,
                    "channel": channel,
                    "receipt_no": payment.receipt_no,
                    "txn": channel_txn_id,
                },
                at=at,
            )
    except IntegrityError:
        found = _existing_payment(channel, channel_txn_id, idempotency_key, request_hash)
        if found is None:
            raise
        return found
    return payment


def _post_payment(
    *,
    account: Account,
    amount: Decimal,
    channel: str,
    at: datetime,
    actor: User | None,
    session: CashierSession | None,
    business_date: date,
    channel_txn_id: str = "",
    idempotency_key: str | None = None,
    request_hash: str = "",
    reference: str = "",
    designated: LedgerEntry | None = None,
) -> Payment:
    """Inside the caller's transaction with the account locked: entry, allocation, payment row."""
    receipt_no = new_number("SK", business_date)
    entry = _post(
        account=account,
        kind=EntryKind.PAYMENT,
        amount=-amount,
        other_gl=CHANNEL_GL[channel],
        at=at,
        document_no=receipt_no,
        actor=actor,
        business_date=business_date,
        memo=str(Channel(channel).label),
    )
    _settle_credit(
        account=account,
        credit=entry,
        amount=amount,
        at=at,
        actor=actor,
        designated=designated,
        charge_late_fees=True,
    )
    payment = Payment.objects.create(
        entry=entry,
        org_id=session.org_id if session is not None else account.org_id,
        account=account,
        channel=channel,
        amount=amount,
        paid_at=at,
        business_date=business_date,
        receipt_no=receipt_no,
        channel_txn_id=channel_txn_id or "",
        idempotency_key=idempotency_key or None,
        request_hash=request_hash,
        session=session,
        cashier=actor if session is not None else None,
        reference=reference[:64],
    )
    payment.was_created = True  # an idempotent replay returns the earlier row without this flag
    return payment


def _existing_payment(channel: str, txn: str, key: str | None, request_hash: str) -> Payment | None:
    if key:
        p = Payment.objects.select_related("entry", "account").filter(idempotency_key=key).first()
        if p is not None:
            if request_hash and p.request_hash and p.request_hash != request_hash:
                raise IdempotencyConflict(
                    path="Idempotency-Key", errors="this key was used for a different request"
                )
            return p
    if txn:
        p = (
            Payment.objects.select_related("entry", "account")
            .filter(channel=channel, channel_txn_id=txn)
            .first()
        )
        if p is not None:
            return p
    return None


# --- reversal, refund, transfer, approvals ------------------------------------------------------
def reverse_payment(*, payment: Payment, reason: str, actor: User | None, at: datetime) -> LedgerEntry:
    """Reverse (冲正) a payment: a new entry that undoes it and its allocations; the late fees it
    charged are credited back. Call through an approved `Approval` (kind reversal)."""
    if not reason:
        raise UnableToReverse(path="reason", errors="is required")
    with transaction.atomic():
        acc = _lock(payment.account_id)
        if LedgerEntry.objects.filter(reverses_id=payment.entry_id).exists():
            raise UnableToReverse(path="payment", errors=f"payment {payment.receipt_no} is already reversed")
        entry = _post(
            account=acc,
            kind=EntryKind.REVERSAL,
            amount=payment.amount,
            other_gl=CHANNEL_GL[payment.channel],
            at=at,
            document_no=new_number("CZ", local_date(at)),
            actor=actor,
            reverses=payment.entry,
            refers_to=payment.entry,
            memo=reason,
        )
        _undo_allocations(account=acc, credit_id=payment.entry_id, at=at, by_entry=entry)
        # credit back the late fees this payment charged
        for fee in LedgerEntry.objects.filter(origin_id=payment.entry_id, kind=EntryKind.LATE_FEE):
            _undo_allocations(account=acc, debit_id=fee.pk, at=at, by_entry=entry)
            credit = _post(
                account=acc,
                kind=EntryKind.ADJUSTMENT_CREDIT,
                amount=-fee.amount,
                other_gl=GL.LATE_FEE_INCOME,
                at=at,
                document_no=new_number("CZ", local_date(at)),
                actor=actor,
                reverses=fee,
                refers_to=fee,
                origin=entry,
                memo="冲正违约金",
            )
            Allocation.objects.create(
                account=acc,
                credit=credit,
                debit=fee,
                component="late_fee",
                amount=fee.amount,
                at=at,
                by_entry=entry,
            )
        Allocation.objects.create(
            account=acc, credit_id=payment.entry_id, debit=entry, amount=payment.amount, at=at, by_entry=entry
        )
        _apply_open_credits(account=acc, at=at, by_entry=entry)
        audit.record(
            actor=actor,
            action="payment.reverse",
            target=entry,
            reason=reason,
            at=at,
            after={"receipt_no": payment.receipt_no, "amount": payment.amount},
        )
    return entry


def _undo_allocations(
    *,
    account: Account,
    at: datetime,
    by_entry: LedgerEntry,
    credit_id: int | None = None,
    debit_id: int | None = None,
) -> None:
    q = Q(credit_id=credit_id) if credit_id is not None else Q(debit_id=debit_id)
    net = (
        Allocation.objects.filter(q)
        .values("credit_id", "debit_id", "component")
        .annotate(total=Sum("amount"))
    )
    Allocation.objects.bulk_create(
        [
            Allocation(
                account=account,
                credit_id=r["credit_id"],
                debit_id=r["debit_id"],
                component=r["component"],
                amount=-r["total"],
                at=at,
                by_entry=by_entry,
            )
            for r in net
            if r["total"]
        ]
    )


def refund(*, account: Account, amount: Any, reason: str, actor: User | None, at: datetime) -> LedgerEntry:
    """Pay back prepayment (退款): only what the account holds in credit."""
    amount = parse_amount(amount)
    with transaction.atomic():
        acc = _lock(account)
        avail = available_credit(acc)
        if amount > avail:
            raise UnableToPost(path="amount", errors=f"only {avail} is held as prepayment")
        entry = _post(
            account=acc,
            kind=EntryKind.REFUND,
            amount=amount,
            other_gl=GL.REFUND_PAYABLE,
            at=at,
            document_no=new_number("TK", local_date(at)),
            actor=actor,
            memo=reason,
        )
        _consume_credits(account=acc, debit=entry, amount=amount, at=at)
        audit.record(
            actor=actor, action="ledger.refund", target=entry, reason=reason, at=at, after={"amount": amount}
        )
    return entry


def transfer_prepayment(
    *, source: Account, target: Account, amount: Any, reason: str, actor: User | None, at: datetime
) -> tuple[LedgerEntry, LedgerEntry]:
    """Move prepayment from one account to another (转账): two balanced entries."""
    amount = parse_amount(amount)
    if source.pk == target.pk:
        raise UnableToPost(path="target", errors="choose another account")
    with transaction.atomic():
        first, second = sorted([source.pk, target.pk])
        locked = {first: _lock(first), second: _lock(second)}  # always in id order: no deadlock
        src, dst = locked[source.pk], locked[target.pk]
        avail = available_credit(src)
        if amount > avail:
            raise UnableToPost(path="amount", errors=f"only {avail} is held as prepayment")
        no = new_number("ZZ", local_date(at))
        out = _post(
            account=src,
            kind=EntryKind.TRANSFER_OUT,
            amount=amount,
            other_gl=GL.TRANSFER,
            at=at,
            document_no=no,
            actor=actor,
            memo=f"转至 {dst.account_no}",
        )
        _consume_credits(account=src, debit=out, amount=amount, at=at)
        inn = _post(
            account=dst,
            kind=EntryKind.TRANSFER_IN,
            amount=-amount,
            other_gl=GL.TRANSFER,
            at=at,
            document_no=no,
            actor=actor,
            refers_to=out,
            memo=f"自 {src.account_no} 转入",
        )
        _settle_credit(account=dst, credit=inn, amount=amount, at=at, actor=actor)
        audit.record(
            actor=actor,
            action="ledger.transfer",
            target=out,
            reason=reason,
            at=at,
            after={"amount": amount, "to": dst.account_no},
        )
    return out, inn


def write_off(*, debt: LedgerEntry, reason: str, actor: User | None, at: datetime) -> LedgerEntry:
    """Write off (核销) what is still open of a debt; recorded so later recoveries can be posted."""
    with transaction.atomic():
        acc = _lock(debt.account_id)
        open_ = {d.id: d.open for d in _debts(acc)}.get(debt.pk, ZERO)
        if open_ <= 0:
            raise UnableToPost(path="debt", errors="nothing is open on this debt")
        entry = _post(
            account=acc,
            kind=EntryKind.WRITE_OFF,
            amount=-open_,
            other_gl=GL.BAD_DEBT,
            at=at,
            document_no=new_number("HX", local_date(at)),
            actor=actor,
            refers_to=debt,
            memo=reason,
        )
        Allocation.objects.create(
            account=acc,
            credit=entry,
            debit=debt,
            component="late_fee" if debt.kind == EntryKind.LATE_FEE else "principal",
            amount=open_,
            at=at,
            by_entry=entry,
        )
        audit.record(
            actor=actor,
            action="ledger.write_off",
            target=entry,
            reason=reason,
            at=at,
            after={"amount": open_, "debt": debt.document_no},
        )
    return entry


def request_approval(
    *,
    kind: str,
    account: Account,
    actor: User,
    at: datetime,
    reason: str,
    target: LedgerEntry | None = None,
    amount: Any = None,
    valid_until: date | None = None,
    payload: dict | None = None,
    evidence: str = "",
) -> Approval:
    errors: list[FieldError] = []
    if kind not in Approval.Kind.values:
        errors.append(FieldError("kind", f"unknown kind {kind!r}"))
    if not reason or not reason.strip():
        errors.append(FieldError("reason", "is required"))
    amt = ZERO
    if kind in (Approval.Kind.REFUND,):
        try:
            amt = parse_amount(amount)
        except InvalidInput as exc:
            errors += exc.errors
    if kind == Approval.Kind.REVERSAL:
        if target is None or target.kind != EntryKind.PAYMENT:
            errors.append(FieldError("payment", "choose the payment to reverse"))
        elif LedgerEntry.objects.filter(reverses=target).exists():
            errors.append(FieldError("payment", "this payment is already reversed"))
        else:
            amt = -target.amount
    if kind in (Approval.Kind.WRITE_OFF, Approval.Kind.LATE_FEE_WAIVER) and target is None:
        errors.append(FieldError("debt", "choose the debt"))
    if kind == Approval.Kind.WRITE_OFF and not evidence:
        errors.append(FieldError("evidence", "a write-off needs evidence"))
    if kind in (Approval.Kind.INSTALMENT, Approval.Kind.DEFERRAL):
        if valid_until is None:
            errors.append(FieldError("valid_until", "is required"))
        elif valid_until < local_date(at):
            errors.append(FieldError("valid_until", "lies in the past"))
    if target is not None and target.account_id != account.pk:
        errors.append(FieldError("target", "belongs to another account"))
    if kind == Approval.Kind.WRITE_OFF and target is not None:
        amt = {d.id: d.open for d in _debts(account)}.get(target.pk, ZERO)
        if amt <= 0:
            errors.append(FieldError("debt", "nothing is open on this debt"))
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        ap = Approval.objects.create(
            org_id=account.org_id,
            account=account,
            kind=kind,
            target=target,
            amount=amt,
            reason=reason.strip(),
            evidence=evidence,
            payload=payload or {},
            valid_until=valid_until,
            requested_by=actor,
            requested_at=at,
        )
        audit.record(actor=actor, action=f"approval.request.{kind}", target=ap, reason=reason, at=at)
    return ap


APPROVER_ROLES = ("manager", "administrator", "billing_auditor")


def decide_approval(
    *, approval: Approval, approve: bool, actor: User, at: datetime, note: str = ""
) -> Approval:
    """Approve (and carry out) or reject a request; the requester cannot approve their own."""
    with transaction.atomic():
        ap = Approval.objects.select_for_update().get(pk=approval.pk)
        if ap.state != Approval.State.REQUESTED:
            raise UnableToDecide(path="approval", errors=f"already {ap.state}")
        if ap.requested_by_id == actor.pk:
            raise UnableToDecide(path="approval", errors="a request is approved by someone else")
        if not actor.has_role(*APPROVER_ROLES) and not actor.is_superuser:
            raise UnableToDecide(path="approval", errors="you may not approve this")
        if approve and ap.kind == Approval.Kind.WRITE_OFF:
            _check_write_off_level(ap, actor)
        ap.decided_by = actor
        ap.decided_at = at
        ap.decision_note = note[:200]
        if not approve:
            ap.state = Approval.State.REJECTED
        else:
            ap.state = Approval.State.APPROVED
            if ap.kind == Approval.Kind.REVERSAL:
                ap.result_entry = reverse_payment(
                    payment=ap.target.payment, reason=ap.reason, actor=actor, at=at
                )
            elif ap.kind == Approval.Kind.REFUND:
                ap.result_entry = refund(
                    account=ap.account, amount=ap.amount, reason=ap.reason, actor=actor, at=at
                )
            elif ap.kind == Approval.Kind.WRITE_OFF:
                ap.result_entry = write_off(debt=ap.target, reason=ap.reason, actor=actor, at=at)
        ap.save()
        audit.record(actor=actor, action=f"approval.{ap.state}.{ap.kind}", target=ap, reason=note, at=at)
    return ap


def _check_write_off_level(ap: Approval, actor: User) -> None:
    """Write-off approval by amount (DOMAIN §5.5): above the org policy's
    `write_off_approval_amount`, only the province (a province-level approver) may approve."""
    debt = ap.target
    open_ = {d.id: d.open for d in _debts(_lock(debt.account_id))}.get(debt.pk, ZERO)
    limit = Decimal(policy_for(ap.account.org).write_off_approval_amount)  # a default Policy holds an int
    province = actor.is_superuser or (actor.org is not None and actor.org.level == Org.Level.PROVINCE)
    if open_ > limit and not province:
        msg = f"a write-off of {money_str(open_)} (above {money_str(limit)}) is approved by the province"
        raise UnableToDecide(path="approval", errors=msg)


# --- cashier sessions and daily close -----------------------------------------------------------
def open_session(
    *, cashier: User, org: Org | None = None, at: datetime, opening_float: Any = "0"
) -> CashierSession:
    org = org or cashier.org
    if org is None:
        raise InvalidInput(path="org", errors="the cashier has no service hall")
    day = local_date(at)
    if DayLock.objects.filter(org=org, business_date=day).exists():
        raise InvalidInput(path="business_date", errors="this business day is already closed")
    existing = CashierSession.objects.filter(cashier=cashier, state=CashierSession.State.OPEN).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            s = CashierSession.objects.create(
                cashier=cashier,
                org=org,
                business_date=day,
                opened_at=at,
                opening_float=parse_amount(opening_float, "opening_float", allow_zero=True),
            )
            audit.record(actor=cashier, action="cashier.open", target=s, at=at)
    except IntegrityError:
        return CashierSession.objects.get(cashier=cashier, state=CashierSession.State.OPEN)
    return s


def session_totals(session: CashierSession) -> dict[str, Decimal]:
    """What the system says the till took, by channel (net of reversals of those payments)."""
    out = {c: ZERO for c in COUNTER_CHANNELS}
    # round_fen: SQLite sums decimals as floats
    for ch, total in Payment.objects.filter(session=session).values_list("channel").annotate(t=Sum("amount")):
        out[ch] += round_fen(total)
    reversed_ = (
        LedgerEntry.objects.filter(kind=EntryKind.REVERSAL, reverses__payment__session=session)
        .values_list("reverses__payment__channel")
        .annotate(t=Sum("amount"))
    )
    for ch, total in reversed_:
        out[ch] -= round_fen(total)
    return out


def close_session(
    *, session: CashierSession, counted_cash: Any, actor: User, at: datetime, note: str = ""
) -> CashierSession:
    """The cashier's daily close (日结): counted cash against the system; the difference is recorded."""
    counted = parse_amount(counted_cash, "counted_cash", allow_zero=True)
    with transaction.atomic():
        s = CashierSession.objects.select_for_update().get(pk=session.pk)
        if s.state != CashierSession.State.OPEN:
            raise UnableToCloseDay(path="session", errors="already closed")
        if s.cashier_id != actor.pk and not actor.has_role("manager", "administrator"):
            raise UnableToCloseDay(path="session", errors="this is another cashier's session")
        t = session_totals(s)
        s.system_cash = t[Channel.CASH] + s.opening_float
        s.system_pos = t[Channel.POS]
        s.system_cheque = t[Channel.CHEQUE]
        s.counted_cash = counted
        s.difference = counted - s.system_cash
        s.state = CashierSession.State.CLOSED
        s.closed_at = at
        s.note = note[:200]
        s.save()
        audit.record(
            actor=actor,
            action="cashier.close",
            target=s,
            at=at,
            after={"system_cash": s.system_cash, "counted": counted, "difference": s.difference},
        )
    return s


def lock_day(*, org: Org, business_date: date, actor: User, at: datetime) -> DayLock:
    """Lock a service hall's day once every session of that day is closed."""
    with transaction.atomic():
        still_open = CashierSession.objects.filter(
            org=org, business_date=business_date, state=CashierSession.State.OPEN
        ).count()
        if still_open:
            raise UnableToCloseDay(path="business_date", errors=f"{still_open} cashier session(s) still open")
        sessions = CashierSession.objects.filter(org=org, business_date=business_date)
        agg = sessions.aggregate(
            cash=Sum("system_cash"),
            pos=Sum("system_pos"),
            cheque=Sum("system_cheque"),
            counted=Sum("counted_cash"),
            diff=Sum("difference"),
        )
        try:
            with transaction.atomic():
                lock = DayLock.objects.create(
                    org=org,
                    business_date=business_date,
                    locked_by=actor,
                    locked_at=at,
                    totals={k: money_str(Decimal(v or 0)) for k, v in agg.items()}
                    | {"sessions": sessions.count()},
                )
        except IntegrityError:
            raise UnableToCloseDay(path="business_date", errors="this day is already locked") from None
        audit.record(actor=actor, action="day.lock", target=lock, org=org, at=at, after=lock.totals)
    return lock
