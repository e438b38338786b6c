"""Agency collection (代收) reconciliation files: what a bank's counters, a payment app or a shop
collected for the utility, reported as a daily file and posted as `agency` payments.

File: CSV, UTF-8, one payment per line `txn_id,account_no,amount,paid_at` (an optional header
line and `#` comments are skipped); `paid_at` is `YYYY-MM-DD HH:MM[:SS]` in local time or ISO
8601 with an offset. The file is validated whole first: any bad line (missing or duplicate
transaction id, an amount that is not positive money with at most two decimals, an unknown
account or one outside the importing org, a time that is not a time or lies after the import)
refuses the file with every error named by line and field, and nothing is posted.

Posting, in the order the payments were made, in chunks (one transaction each, the chunk's
accounts locked in id order):
- a transaction id already posted for this channel is skipped (a file imported twice, or a
  payment that also came through the callback, is posted once);
- a payment that touches nothing overdue on its day (the usual case: paid before the due date)
  is planned by the same rule as every payment (`rules.plan_payment`, oldest debt first, the
  org's policy) and written set-based, like bank withholding;
- anything else (a late payment, which charges late fees, or a prepaid account, whose cost
  control must react) takes the general `services.take_payment`, one by one.
The same file content imported again returns the first import's report.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import DecimalField, Exists, OuterRef, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mmis.accounts import rules, services
from mmis.accounts.channels import ENTRY_COLUMNS, PAYMENT_COLUMNS, _copy, _next_ids
from mmis.accounts.models import (
    CHANNEL_GL,
    DEBT_KINDS,
    GL,
    AgencyFile,
    Allocation,
    Channel,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
    PrepaidAccount,
)
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.money import ZERO, money_str, round_fen
from mmis.customers.models import Account
from mmis.org import audit

CHANNEL = Channel.AGENCY
MAX_ERRORS = 200
HEADER = ("txn_id", "account_no", "amount", "paid_at")
MONEY = DecimalField(max_digits=16, decimal_places=2)


@dataclass(frozen=True)
class AgencyRow:
    line: int
    txn_id: str
    account_no: str
    amount: Decimal
    paid_at: datetime


def parse_time(value: str) -> datetime | None:
    """`YYYY-MM-DD HH:MM[:SS]` (local time) or ISO 8601 with an offset; None when it is neither."""
    try:
        t = parse_datetime(value.strip())
    except ValueError:
        return None
    if t is None:
        return None
    return timezone.make_aware(t) if timezone.is_naive(t) else t


def parse_file(content: str, *, at: datetime) -> list[AgencyRow]:
    """The file's payments, or InvalidInput naming every bad line (`lines[N].field`, N counted
    from 1 as an editor shows them)."""
    rows, errors, _refs = _parse(content, at=at)
    if errors:
        raise InvalidInput(errors)
    return rows


def _parse(content: str, *, at: datetime) -> tuple[list[AgencyRow], list[FieldError], list[tuple[int, str]]]:
    """The good lines, the errors of the others, and (line, account_no) of every line naming an
    account (its account is checked even when the line has other errors)."""
    refs: list[tuple[int, str]] = []
    errors: list[FieldError] = []
    rows: list[AgencyRow] = []
    seen: dict[str, int] = {}
    for n, rec in enumerate(csv.reader(io.StringIO(content)), start=1):
        if not rec or not "".join(rec).strip() or rec[0].lstrip().startswith("#"):
            continue
        if n == 1 and tuple(x.strip().lower() for x in rec[:4]) == HEADER:
            continue
        p = f"lines[{n}]"
        if len(rec) < 4:
            errors.append(FieldError(p, "expected txn_id,account_no,amount,paid_at"))
        else:
            txn, acc_no = rec[0].strip(), rec[1].strip()
            line_errors = len(errors)
            if not txn:
                errors.append(FieldError(f"{p}.txn_id", "is required"))
            elif len(txn) > 64:
                errors.append(FieldError(f"{p}.txn_id", "is longer than 64 characters"))
            elif txn in seen:
                errors.append(FieldError(f"{p}.txn_id", f"duplicate transaction {txn} (line {seen[txn]})"))
            else:
                seen[txn] = n
            if not acc_no:
                errors.append(FieldError(f"{p}.account_no", "is required"))
            else:
                refs.append((n, acc_no))
            amount = ZERO
            try:
                amount = services.parse_amount(rec[2], f"{p}.amount")
            except InvalidInput as exc:
                errors += exc.errors
            paid_at = parse_time(rec[3])
            if paid_at is None:
                errors.append(FieldError(f"{p}.paid_at", f"{rec[3].strip()!r} is not a date and time"))
            elif paid_at > at:
                errors.append(
                    FieldError(f"{p}.paid_at", "lies after the import: check the file's payment times")
                )
            if len(errors) == line_errors:
                rows.append(AgencyRow(n, txn, acc_no, amount, paid_at))
        if len(errors) >= MAX_ERRORS:
            break
    if not rows and not errors:
        errors.append(FieldError("file", "holds no payment"))
    return rows, errors, refs


def import_file(*, org, agency: str, content: str, actor, at: datetime, chunk: int = 2000) -> dict:
    """Validate and post an agency collection file for accounts of `org`'s subtree (see the module
    docstring); the reconciliation report. The same content again: the first import's report."""
    agency = (agency or "").strip()
    if not agency:
        raise InvalidInput(path="agency", errors="is required")
    if len(agency) > 60:
        raise InvalidInput(path="agency", errors="is longer than 60 characters")
    digest = hashlib.sha256(content.encode()).hexdigest()
    done = AgencyFile.objects.filter(sha256=digest).first()
    if done is not None:
        return {**done.report, "already_imported": True}
    rows, errors, refs = _parse(content, at=at)
    accounts = _accounts({no for _n, no in refs}, org=org)
    errors += [
        FieldError(f"lines[{n}].account_no", f"unknown account {no}")
        if no not in accounts
        else FieldError(f"lines[{n}].account_no", f"account {no} is not one of {org.name}")
        for n, no in refs
        if no not in accounts or not accounts[no][1].startswith(org.path)
    ]
    if errors:
        errors.sort(
            key=lambda e: int(e.path[6:].split("]")[0]) if e.path.startswith("lines[") else 0
        )  # stable
        raise InvalidInput(errors[:MAX_ERRORS])
    done_txns = _posted_txns([r.txn_id for r in rows])
    todo = sorted((r for r in rows if r.txn_id not in done_txns), key=lambda r: (r.paid_at, r.line))
    counts = {"bulk": 0, "general": 0}
    for i in range(0, len(todo), chunk):
        part = todo[i : i + chunk]
        with transaction.atomic():
            _post_chunk(
                part,
                accounts={r.account_no: accounts[r.account_no][0] for r in part},
                agency=agency,
                actor=actor,
                counts=counts,
            )
    days: dict[str, dict] = defaultdict(lambda: {"count": 0, "amount": ZERO})
    for r in todo:
        d = days[services.local_date(r.paid_at).isoformat()]
        d["count"] += 1
        d["amount"] += r.amount
    report = {
        "agency": agency,
        "rows": len(rows),
        "amount": money_str(sum((r.amount for r in rows), ZERO)),
        "posted": len(todo),
        "posted_amount": money_str(sum((r.amount for r in todo), ZERO)),
        "already_posted": len(rows) - len(todo),
        "late_or_prepaid": counts["general"],
        "days": {k: {"count": v["count"], "amount": money_str(v["amount"])} for k, v in sorted(days.items())},
    }
    with transaction.atomic():
        f = AgencyFile.objects.create(
            org=org,
            agency=agency,
            sha256=digest,
            imported_at=at,
            imported_by=actor if actor is not None and actor.pk else None,
            rows=len(rows),
            posted=len(todo),
            total_amount=sum((r.amount for r in todo), ZERO),
            report=report,
        )
        audit.record(actor=actor, action="agency.import", target=f, org=org, after=report, at=at)
    return report


def _accounts(numbers: set[str], *, org) -> dict[str, tuple[int, str]]:
    """account_no → (id, org path) of these accounts (any org: the caller tells unknown from
    outside the importing org)."""
    out: dict[str, tuple[int, str]] = {}
    nos = sorted(numbers)
    for i in range(0, len(nos), 5000):
        for pk, no, path in Account.objects.filter(account_no__in=nos[i : i + 5000]).values_list(
            "pk", "account_no", "org__path"
        ):
            out[no] = (pk, path)
    return out


def _posted_txns(txns: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(txns), 5000):
        out.update(
            Payment.objects.filter(channel=CHANNEL, channel_txn_id__in=txns[i : i + 5000]).values_list(
                "channel_txn_id", flat=True
            )
        )
    return out


def _open_debts(account_ids: list[int]) -> dict[int, list[rules.Debt]]:
    """Open debts of these (locked) accounts, as allocation needs them when nothing is overdue."""
    debts: dict[int, list[rules.Debt]] = defaultdict(list)
    q = (
        LedgerEntry.objects.filter(account_id__in=account_ids, kind__in=DEBT_KINDS)
        .annotate(paid=Coalesce(Sum("allocations_in__amount"), ZERO, output_field=MONEY))
        .values_list(
            "pk", "account_id", "amount", "paid", "due_date", "kind", "refers_to_id", "late_fee_class"
        )
    )
    for pk, acc, amount, paid, due, kind, ref, fee_class in q.iterator(chunk_size=20000):
        left = round_fen(amount - paid)  # SQLite sums decimals as floats
        if left > 0:
            is_fee = kind == EntryKind.LATE_FEE
            debts[acc].append(
                rules.Debt(
                    id=pk,
                    open=left,
                    due_date=due,
                    is_late_fee=is_fee,
                    parent_id=ref if is_fee else None,
                    late_fee_class="" if is_fee else fee_class,
                )
            )
    return debts


def _on_time(debts: list[rules.Debt], on: date) -> bool:
    """Nothing of these debts is overdue on `on` (no late fee can arise, none is open)."""
    return all(not d.is_late_fee and (d.due_date is None or d.due_date >= on) for d in debts)


class _Buffer:
    """Set-based rows of on-time payments, written (ids assigned) before any general-path posting
    and at the end of the chunk, so that every posting sees the ones before it."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.items: list[tuple[AgencyRow, int, int, rules.Plan]] = []

    def add(self, row: AgencyRow, account_id: int, org_id: int, plan: rules.Plan) -> None:
        self.items.append((row, account_id, org_id, plan))

    def flush(self, actor) -> None:
        if not self.items:
            return
        n = len(self.items)
        entry_ids = _next_ids(LedgerEntry, n)
        payment_ids = _next_ids(Payment, n)
        actor_id = actor.pk if actor is not None and actor.pk else None
        memo = str(Channel(CHANNEL).label)
        entries, lines, allocs, pays = [], [], [], []
        for (row, acc, org_id, plan), eid, pid in zip(self.items, entry_ids, payment_ids, strict=True):
            bd = services.local_date(row.paid_at)
            no = services.new_number("SK", bd)
            # fmt: off
            entries.append((eid, org_id, acc, EntryKind.PAYMENT, no, -row.amount, None, bd, row.paid_at, "",
                            None, None, None, None, "", actor_id, memo))
            # fmt: on
            lines.append((eid, acc, GL.RECEIVABLE, -row.amount))
            lines.append((eid, None, CHANNEL_GL[CHANNEL], row.amount))
            for (_what, debit_id), component, part in plan.allocations:
                allocs.append((acc, eid, debit_id, component, part, row.paid_at, eid))
            pays.append(
                (
                    pid,
                    eid,
                    org_id,
                    acc,
                    CHANNEL,
                    row.amount,
                    row.paid_at,
                    bd,
                    no,
                    row.txn_id,
                    None,
                    "",
                    None,
                    None,
                )
            )
        _copy(LedgerEntry, ENTRY_COLUMNS, entries)
        _copy(LedgerLine, ["entry", "account", "gl", "amount"], lines)
        _copy(Allocation, ["account", "credit", "debit", "component", "amount", "at", "by_entry"], allocs)
        _copy(Payment, PAYMENT_COLUMNS, [(*p, self.reference[:64]) for p in pays])
        self.items = []


def _post_chunk(rows: list[AgencyRow], *, accounts: dict[str, int], agency: str, actor, counts: dict) -> None:
    ids = sorted(set(accounts.values()))
    locked = {
        a.pk: a
        for a in Account.objects.select_for_update(of=("self",), no_key=True)
        .select_related("org")
        .annotate(has_prepaid=Exists(PrepaidAccount.objects.filter(account_id=OuterRef("pk"))))
        .filter(pk__in=ids)
        .order_by("pk")
    }
    debts = _open_debts(ids)
    # a txn posted a moment ago by the callback or a parallel import (the accounts are locked now)
    posted = _posted_txns([r.txn_id for r in rows])
    buf = _Buffer(agency)
    for row in rows:
        if row.txn_id in posted:
            continue
        acc = locked[accounts[row.account_no]]
        on = services.local_date(row.paid_at)
        mine = debts.get(acc.pk, [])
        if not acc.has_prepaid and _on_time(mine, on):
            pol = services.policy_for(acc.org)
            plan = rules.plan_payment(
                amount=row.amount,
                debts=mine,
                paid_on=on,
                order=pol.allocation_order,
                minimum=pol.late_fee_minimum,
                minimum_scope=pol.minimum_scope,
                charge_late_fees=True,
                basis=pol.late_fee_basis,
            )
            if not plan.fees:
                buf.add(row, acc.pk, acc.org_id, plan)
                used: dict[int, Decimal] = defaultdict(lambda: ZERO)
                for (_w, did), _c, part in plan.allocations:
                    used[did] += part
                debts[acc.pk] = [
                    rules.Debt(**{**services._debt_dict(d), "open": d.open - used[d.id]})
                    for d in mine
                    if d.open - used[d.id] > 0
                ]
                counts["bulk"] += 1
                continue
        buf.flush(actor)
        services.take_payment(
            account=acc,
            amount=row.amount,
            channel=CHANNEL,
            at=row.paid_at,
            actor=actor,
            channel_txn_id=row.txn_id,
            reference=agency,
        )
        debts[acc.pk] = services._debts(acc)
        counts["general"] += 1
    buf.flush(actor)
