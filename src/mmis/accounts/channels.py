"""Payment channels: signed callbacks of online payment and agency collection (代收), and bank
withholding (代扣) batches: the outgoing file, the bank's result file and its reconciliation.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import DecimalField, F, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mmis.accounts import rules, services
from mmis.accounts.models import (
    DEBT_KINDS,
    GL,
    Allocation,
    BankBatch,
    BankBatchLine,
    CallbackLog,
    Channel,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
)
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.money import ZERO, money_str
from mmis.customers.models import Account
from mmis.org import audit

MONEY = DecimalField(max_digits=14, decimal_places=2)
CALLBACK_MAX_AGE = timedelta(minutes=10)
CALLBACK_MAX_PAID_AGE = timedelta(days=3)


class CallbackRejected(InvalidInput):
    """A callback with a wrong signature, a replay or a bad body: logged, nothing posted."""

    def __init__(self, errors, path: str = "", status: int = 422) -> None:
        super().__init__(errors, path)
        self.status = status


def callback_secret() -> bytes:
    """The installation's callback key (settings.MMIS_CALLBACK_SECRET: from the environment, else
    made once per installation; never a value from the public source)."""
    secret = getattr(settings, "MMIS_CALLBACK_SECRET", "")
    if not secret:
        raise ImproperlyConfigured("MMIS_CALLBACK_SECRET is not set")
    return secret.encode()


def sign(body: bytes, secret: bytes | None = None) -> str:
    """HMAC-SHA256 of the raw body, hex: the `X-MMIS-Signature` header of a callback."""
    return hmac.new(secret or callback_secret(), body, hashlib.sha256).hexdigest()


def _log(body: bytes, signature: str, outcome: str, message: str, at, channel="", txn="", payment=None):
    # kept even when the caller's transaction fails: the log is written in its own transaction
    return CallbackLog.objects.create(
        received_at=at,
        channel=channel[:20],
        txn_id=txn[:64],
        body=body.decode("utf-8", "replace")[:10000],
        signature=signature[:200],
        outcome=outcome,
        message=message[:300],
        payment=payment,
    )


def handle_callback(*, body: bytes, signature: str, at: datetime) -> Payment:
    """Post the payment a channel reports. Body JSON: channel (online|agency), txn_id, account_no,
    amount, paid_at, timestamp. Rejected and logged: a wrong signature (401), a stale timestamp or
    a replay of a transaction already posted (409), a bad body (422)."""
    expected = sign(body)
    if not signature or not hmac.compare_digest(expected, signature.strip().lower()):
        _log(body, signature, "bad_signature", "signature does not match", at)
        raise CallbackRejected("signature does not match", path="X-MMIS-Signature", status=401)
    try:
        data = json.loads(body, parse_float=Decimal)  # an amount sent as a number is never a float
        if not isinstance(data, dict):
            raise ValueError
    except ValueError:
        _log(body, signature, "invalid", "body is not a JSON object", at)
        raise CallbackRejected("body is not a JSON object") from None
    errors: list[FieldError] = []
    channel = str(data.get("channel") or "")
    txn = str(data.get("txn_id") or "").strip()
    if channel not in (Channel.ONLINE, Channel.AGENCY):
        errors.append(FieldError("channel", "is online or agency"))
    if not txn or len(txn) > 64:
        errors.append(FieldError("txn_id", "is required (at most 64 characters)"))
    amount = None
    try:
        amount = services.parse_amount(data.get("amount"))
    except InvalidInput as exc:
        errors += exc.errors
    account = (
        Account.objects.select_related("org").filter(account_no=str(data.get("account_no") or "")).first()
    )
    if account is None:
        errors.append(FieldError("account_no", "unknown account"))
    paid_at = parse_datetime(str(data.get("paid_at") or "")) if data.get("paid_at") else None
    if paid_at is None:
        errors.append(FieldError("paid_at", "is required (ISO 8601)"))
    else:
        if timezone.is_naive(paid_at):
            paid_at = timezone.make_aware(paid_at)
        # a channel reports a payment as it happens: a time ahead of the callback, or days behind
        # it (which would date the payment before its late fee), is refused; late settlements
        # come in the agency's reconciliation file
        if paid_at > at + CALLBACK_MAX_AGE:
            errors.append(FieldError("paid_at", "lies after the callback: send the time the customer paid"))
        elif paid_at < at - CALLBACK_MAX_PAID_AGE:
            errors.append(
                FieldError(
                    "paid_at",
                    "is more than 3 days before the callback: post late settlements as an agency file"
                    " (/api/v1/agency-files)",
                )
            )
    stamp = parse_datetime(str(data.get("timestamp") or "")) if data.get("timestamp") else None
    if stamp is not None and timezone.is_naive(stamp):
        stamp = timezone.make_aware(stamp)
    if errors:
        _log(
            body, signature, "invalid", "; ".join(f"{e.path}: {e.message}" for e in errors), at, channel, txn
        )
        raise CallbackRejected(errors)
    if stamp is None or abs(at - stamp) > CALLBACK_MAX_AGE:
        _log(body, signature, "stale", "timestamp missing or too old", at, channel, txn)
        raise CallbackRejected("timestamp missing or older than 10 minutes", path="timestamp", status=409)
    if Payment.objects.filter(channel=channel, channel_txn_id=txn).exists():
        _log(body, signature, "replay", "transaction already posted", at, channel, txn)
        raise CallbackRejected(f"transaction {txn} was already posted", path="txn_id", status=409)
    payment = services.take_payment(
        account=account, amount=amount, channel=channel, at=paid_at, actor=None, channel_txn_id=txn
    )
    if not getattr(payment, "was_created", False):  # the same callback delivered twice at once
        _log(body, signature, "replay", "transaction already posted", at, channel, txn, payment)
        raise CallbackRejected(f"transaction {txn} was already posted", path="txn_id", status=409)
    _log(body, signature, "posted", "", at, channel, txn, payment)
    return payment


# --- bank withholding ---------------------------------------------------------------------------
def _open_by_account(account_ids: list[int] | None = None, org=None) -> dict[int, Decimal]:
    """Open debt per account (sum of debts − allocations to them), set-based."""
    debts = LedgerEntry.objects.filter(kind__in=DEBT_KINDS)
    allocs = Allocation.objects.filter(debit__kind__in=DEBT_KINDS)
    if account_ids is not None:
        debts = debts.filter(account_id__in=account_ids)
        allocs = allocs.filter(account_id__in=account_ids)
    if org is not None:
        debts = debts.filter(org__path__startswith=org.path)
        allocs = allocs.filter(debit__org__path__startswith=org.path)
    out: dict[int, Decimal] = defaultdict(lambda: ZERO)
    for a, t in debts.values_list("account_id").annotate(t=Sum("amount")):
        out[a] += t
    for a, t in allocs.values_list("account_id").annotate(t=Sum("amount")):
        out[a] -= t
    return {a: v for a, v in out.items() if v > 0}


def export_batch(*, org, actor, at: datetime, bank_name: str = "") -> BankBatch:
    """Withholding batch of every bank-withholding account under `org` with open debt."""
    with transaction.atomic():
        accounts = Account.objects.filter(
            org__path__startswith=org.path, payment_method=Account.PaymentMethod.BANK_WITHHOLDING
        )
        if bank_name:
            accounts = accounts.filter(bank_name=bank_name)
        ids = list(accounts.values_list("pk", flat=True))
        if len(ids) < 5000:
            due = _open_by_account(ids)
        else:
            wanted = set(ids)
            due = {k: v for k, v in _open_by_account(None, org).items() if k in wanted}
        # accounts still waiting for another batch's result (few: only batches not yet returned)
        pending = set(
            BankBatchLine.objects.filter(state=BankBatchLine.State.PENDING).values_list(
                "account_id", flat=True
            )
        )
        todo = sorted((a, v) for a, v in due.items() if a not in pending)
        batch = BankBatch.objects.create(
            org=org,
            batch_no=services.new_number("DK", services.local_date(at)),
            bank_name=bank_name,
            created_at=at,
            created_by=actor if actor is not None and actor.pk else None,
            line_count=len(todo),
            total_amount=sum((v for _a, v in todo), ZERO),
        )
        _copy(
            BankBatchLine,
            ["batch", "line_no", "account", "amount", "state", "result_code", "bank_txn_id"],
            [
                (batch.pk, n, a, v, BankBatchLine.State.PENDING, "", "")
                for n, (a, v) in enumerate(todo, start=1)
            ],
        )
        audit.record(
            actor=actor,
            action="bank.export",
            target=batch,
            at=at,
            after={"lines": len(todo), "total": batch.total_amount},
        )
    return batch


def batch_file(batch: BankBatch) -> str:
    """The outgoing file: header line, then line_no,account_no,account_name,bank_account,amount."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["#MMIS-WITHHOLDING", batch.batch_no, batch.line_count, money_str(batch.total_amount)])
    for ln in (
        BankBatchLine.objects.filter(batch=batch)
        .order_by("line_no")
        .values_list(
            "line_no", "account__account_no", "account__name", "account__bank_account_mask", "amount"
        )
        .iterator(chunk_size=20000)
    ):
        w.writerow([ln[0], ln[1], ln[2], ln[3], money_str(ln[4])])
    return out.getvalue()


SUCCESS = "0000"


def parse_results(batch: BankBatch, content: str) -> list[tuple[int, str, Decimal, str, str]]:
    """Validate the bank's result file (line_no,account_no,amount,result_code,bank_txn_id) whole:
    every bad row is reported with its path; nothing is posted when any row is bad."""
    return _parse_results(batch, content)[0]


def _parse_results(
    batch: BankBatch, content: str
) -> tuple[list[tuple[int, str, Decimal, str, str]], dict[int, tuple[str, Decimal]]]:
    errors: list[FieldError] = []
    rows = []
    seen_lines: set[int] = set()
    seen_txn: set[str] = set()
    lines = {
        ln: (acc_no, amt)
        for ln, acc_no, amt in BankBatchLine.objects.filter(batch=batch)
        .values_list("line_no", "account__account_no", "amount")
        .iterator(chunk_size=50000)
    }
    posted = _posted_bank_txns(
        [rec[4].strip() for rec in csv.reader(io.StringIO(content)) if len(rec) > 4 and rec[4].strip()]
    )
    reader = csv.reader(io.StringIO(content))
    for i, rec in enumerate(reader):
        if not rec or (rec[0].startswith("#")):
            continue
        p = f"rows[{i}]"
        if len(rec) < 4:
            errors.append(FieldError(p, "expected line_no,account_no,amount,result_code,bank_txn_id"))
            continue
        try:
            line_no = int(rec[0])
        except ValueError:
            errors.append(FieldError(f"{p}.line_no", f"{rec[0]!r} is not a line number"))
            continue
        if line_no in seen_lines:
            errors.append(FieldError(f"{p}.line_no", f"duplicate result for line {line_no}"))
            continue
        seen_lines.add(line_no)
        if line_no not in lines:
            errors.append(FieldError(f"{p}.line_no", f"line {line_no} is not in batch {batch.batch_no}"))
            continue
        acc_no = rec[1].strip()
        if acc_no != lines[line_no][0]:
            errors.append(FieldError(f"{p}.account_no", f"unknown account {acc_no} for line {line_no}"))
        code = rec[3].strip()
        txn = rec[4].strip() if len(rec) > 4 else ""
        amount = ZERO
        try:
            amount = services.parse_amount(rec[2], f"{p}.amount", allow_zero=code != SUCCESS)
        except InvalidInput as exc:
            errors += exc.errors
        if code == SUCCESS:
            if not txn:
                errors.append(FieldError(f"{p}.bank_txn_id", "is required for a successful debit"))
            elif txn in seen_txn:
                errors.append(FieldError(f"{p}.bank_txn_id", f"duplicate bank transaction {txn}"))
            elif txn in posted:
                errors.append(FieldError(f"{p}.bank_txn_id", f"bank transaction {txn} is already posted"))
            seen_txn.add(txn)
        rows.append((line_no, acc_no, amount, code, txn))
        if len(errors) > 200:
            break
    if errors:
        raise InvalidInput(errors)
    return rows, lines


def _posted_bank_txns(txns: list[str]) -> set[str]:
    """Those of these bank transaction ids already posted (by an earlier batch)."""
    out: set[str] = set()
    for i in range(0, len(txns), 5000):
        out.update(
            Payment.objects.filter(
                channel=Channel.BANK_WITHHOLDING, channel_txn_id__in=txns[i : i + 5000]
            ).values_list("channel_txn_id", flat=True)
        )
    return out


def import_results(*, batch: BankBatch, content: str, actor, at: datetime, chunk: int = 50000) -> dict:
    """Post the successful debits of a result file (chunked transactions; a chunk locks its
    accounts), mark failures and amount mismatches (挂账) and return the reconciliation report."""
    if batch.state != BankBatch.State.EXPORTED:
        raise InvalidInput(path="batch", errors=f"batch {batch.batch_no} results are already posted")
    if connection.vendor == "postgresql":
        return _import_set_based(batch=batch, content=content, actor=actor, at=at, chunk=chunk)
    rows, lines = _parse_results(batch, content)
    paid = sorted((r for r in rows if r[3] == SUCCESS and r[2] == lines[r[0]][1]), key=lambda r: r[0])
    mismatch = [r for r in rows if r[3] == SUCCESS and r[2] != lines[r[0]][1]]
    failed = [r for r in rows if r[3] != SUCCESS]
    posted = 0
    for i in range(0, len(paid), chunk):
        posted += _post_withholding_chunk(batch=batch, rows=paid[i : i + chunk], actor=actor, at=at)
    with transaction.atomic():
        for state, group in ((BankBatchLine.State.FAILED, failed), (BankBatchLine.State.MISMATCH, mismatch)):
            for j in range(0, len(group), 5000):
                part = group[j : j + 5000]
                codes = defaultdict(list)
                for r in part:
                    codes[r[3]].append(r[0])
                for code, nos in codes.items():
                    BankBatchLine.objects.filter(batch=batch, line_no__in=nos).update(
                        state=state, result_code=code
                    )
        missing = BankBatchLine.objects.filter(batch=batch, state=BankBatchLine.State.PENDING).count()
        report = {
            "lines": batch.line_count,
            "results": len(rows),
            "paid": len(paid),
            "paid_amount": money_str(sum((r[2] for r in paid), ZERO)),
            "failed": len(failed),
            "mismatch": len(mismatch),
            "mismatch_amount": money_str(sum((r[2] for r in mismatch), ZERO)),
            "no_result": missing,
            "posted": posted,
        }
        BankBatch.objects.filter(pk=batch.pk).update(
            state=BankBatch.State.RESULTS_POSTED, posted_at=at, report=report
        )
        audit.record(actor=actor, action="bank.results", target=batch, at=at, after=report)
    if posted >= ANALYZE_AFTER_ROWS and connection.vendor == "postgresql" and not connection.in_atomic_block:
        # A large batch changes the ledger tables faster than autovacuum re-samples them; stale
        # statistics right after it make the per-account queries of counter payments plan badly.
        tables = ", ".join(
            f'"{m._meta.db_table}"' for m in (LedgerEntry, LedgerLine, Allocation, Payment, BankBatchLine)
        )
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {tables}")
    batch.refresh_from_db()
    return report


ANALYZE_AFTER_ROWS = 50_000


def _import_set_based(*, batch: BankBatch, content: str, actor, at: datetime, chunk: int) -> dict:
    """`import_results` on PostgreSQL: staged by COPY, validated and posted set-based
    (accounts.withholding); the same report, rows and errors as the row-by-row path."""
    from mmis.accounts import withholding

    try:
        results = withholding.validate(batch, content)
        counts = withholding.report_counts(batch)
        posted = 0
        if counts["paid"]:
            for lo in range(counts["lo"], counts["hi"] + 1, chunk):
                posted += withholding.post_chunk(batch=batch, lo=lo, hi=lo + chunk - 1, actor=actor, at=at)
        with transaction.atomic():
            withholding.mark_unpaid(batch)
            missing = BankBatchLine.objects.filter(batch=batch, state=BankBatchLine.State.PENDING).count()
            report = {
                "lines": batch.line_count,
                "results": results,
                "paid": counts["paid"],
                "paid_amount": money_str(counts["paid_amount"]),
                "failed": counts["failed"],
                "mismatch": counts["mismatch"],
                "mismatch_amount": money_str(counts["mismatch_amount"]),
                "no_result": missing,
                "posted": posted,
            }
            BankBatch.objects.filter(pk=batch.pk).update(
                state=BankBatch.State.RESULTS_POSTED, posted_at=at, report=report
            )
            audit.record(actor=actor, action="bank.results", target=batch, at=at, after=report)
    finally:
        withholding.clear()
    if posted >= ANALYZE_AFTER_ROWS and not connection.in_atomic_block:
        tables = ", ".join(
            f'"{m._meta.db_table}"' for m in (LedgerEntry, LedgerLine, Allocation, Payment, BankBatchLine)
        )
        with connection.cursor() as cur:
            cur.execute(f"ANALYZE {tables}")
    batch.refresh_from_db()
    return report


def _next_ids(model, n: int) -> list[int]:
    if connection.vendor == "postgresql":
        seq = f"{model._meta.db_table}_id_seq"
        with connection.cursor() as cur:
            cur.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [seq, n])
            return [r[0] for r in cur.fetchall()]
    first = (model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    return list(range(first, first + n))


def _copy(model, fields: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    if connection.vendor == "postgresql":
        cols = ", ".join(f'"{model._meta.get_field(f).column}"' for f in fields)
        with (
            connection.cursor() as cur,
            cur.cursor.copy(f'COPY "{model._meta.db_table}" ({cols}) FROM STDIN') as cp,
        ):
            for r in rows:
                cp.write_row(r)
    else:
        names = [model._meta.get_field(f).attname for f in fields]
        model.objects.bulk_create([model(**dict(zip(names, r, strict=True))) for r in rows], batch_size=2000)


def _post_withholding_chunk(*, batch: BankBatch, rows: list, actor, at: datetime) -> int:
    """Set-based posting of successful debits (`rows` sorted by line number). One transaction:
    lock the batch row (two imports of one batch never post a line twice), lock the chunk's
    accounts in id order, load their open debts with what is already allocated in one query, plan
    the allocations in Python (no late fee: a direct debit is on time by the utility's own
    schedule), then COPY entries, lines, allocations and payments and mark the lines in one
    UPDATE."""
    with transaction.atomic():
        BankBatch.objects.select_for_update().filter(pk=batch.pk).values_list("pk").first()
        lo, hi = rows[0][0], rows[-1][0]
        in_chunk = BankBatchLine.objects.filter(
            batch=batch, line_no__gte=lo, line_no__lte=hi, state=BankBatchLine.State.PENDING
        )
        pending = dict(in_chunk.values_list("line_no", "account_id"))
        rows = [r for r in rows if r[0] in pending]
        if not rows:
            return 0
        orgs = dict(
            Account.objects.select_for_update(no_key=True)
            .filter(pk__in=sorted({pending[r[0]] for r in rows}))
            .order_by("pk")
            .values_list("pk", "org_id")
        )
        debts: dict[int, list[rules.Debt]] = defaultdict(list)
        open_q = (
            LedgerEntry.objects.filter(account_id__in=list(orgs), kind__in=DEBT_KINDS)
            .annotate(paid=Coalesce(Sum("allocations_in__amount"), ZERO, output_field=MONEY))
            .annotate(left=F("amount") - F("paid"))
            .filter(left__gt=0)
            .values_list("pk", "account_id", "left", "due_date", "kind", "refers_to_id")
        )
        for pk, acc, left, due, kind, ref in open_q.iterator(chunk_size=20000):
            debts[acc].append(
                rules.Debt(
                    id=pk,
                    open=left,
                    due_date=due,
                    is_late_fee=kind == EntryKind.LATE_FEE,
                    parent_id=ref if kind == EntryKind.LATE_FEE else None,
                )
            )
        n = len(rows)
        entry_ids = _next_ids(LedgerEntry, n)
        payment_ids = _next_ids(Payment, n)
        bd = services.local_date(at)
        actor_id = actor.pk if actor is not None and actor.pk else None
        entries, lines, allocs, pays, marks = [], [], [], [], []
        for (line_no, _acc_no, amount, _code, txn), eid, pid in zip(
            rows, entry_ids, payment_ids, strict=True
        ):
            acc = pending[line_no]
            no = f"{batch.batch_no}-{line_no:07d}"
            # fmt: off
            entries.append((eid, orgs[acc], acc, EntryKind.PAYMENT, no, -amount, None, bd, at, "", None,
                            None, None, None, "", actor_id, "银行代扣"))
            # fmt: on
            lines.append((eid, acc, GL.RECEIVABLE, -amount))
            lines.append((eid, None, GL.BANK_CLEARING, amount))
            mine = debts.get(acc)
            if mine:
                plan = rules.plan_payment(amount=amount, debts=mine, paid_on=bd, charge_late_fees=False)
                used: dict[int, Decimal] = defaultdict(lambda: ZERO)
                for (_w, did), comp, a in plan.allocations:
                    allocs.append((acc, eid, did, comp, a, at, eid))
                    used[did] += a
                debts[acc] = [
                    rules.Debt(**{**services._debt_dict(d), "open": d.open - used[d.id]})
                    for d in mine
                    if d.open - used[d.id] > 0
                ]
            pays.append(
                (pid, eid, orgs[acc], acc, Channel.BANK_WITHHOLDING, amount, at, bd, no, txn, None, "")
            )
            marks.append((line_no, txn, pid))
        _copy(LedgerEntry, ENTRY_COLUMNS, entries)
        _copy(LedgerLine, ["entry", "account", "gl", "amount"], lines)
        _copy(Allocation, ["account", "credit", "debit", "component", "amount", "at", "by_entry"], allocs)
        _copy(Payment, PAYMENT_COLUMNS, [(*p, None, None, "") for p in pays])
        _mark_paid(batch, marks)
    return n


ENTRY_COLUMNS = [
    "id",
    "org",
    "account",
    "kind",
    "document_no",
    "amount",
    "due_date",
    "business_date",
    "posted_at",
    "source_type",
    "source_id",
    "reverses",
    "refers_to",
    "origin",
    "late_fee_class",
    "actor",
    "memo",
]
PAYMENT_COLUMNS = [
    "id",
    "entry",
    "org",
    "account",
    "channel",
    "amount",
    "paid_at",
    "business_date",
    "receipt_no",
    "channel_txn_id",
    "idempotency_key",
    "request_hash",
    "session",
    "cashier",
    "reference",
]


def _mark_paid(batch: BankBatch, marks: list[tuple[int, str, int]]) -> None:
    """Lines paid, with the bank's transaction id and the payment: one UPDATE on PostgreSQL."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(
                f"""UPDATE "{BankBatchLine._meta.db_table}" AS l
                    SET state = %s, result_code = %s, bank_txn_id = v.txn, payment_id = v.pid
                    FROM unnest(%s::int[], %s::text[], %s::bigint[]) AS v(line_no, txn, pid)
                    WHERE l.batch_id = %s AND l.line_no = v.line_no""",
                [
                    BankBatchLine.State.PAID,
                    SUCCESS,
                    [m[0] for m in marks],
                    [m[1] for m in marks],
                    [m[2] for m in marks],
                    batch.pk,
                ],
            )
        return
    for line_no, txn, pid in marks:
        BankBatchLine.objects.filter(batch=batch, line_no=line_no).update(
            state=BankBatchLine.State.PAID, result_code=SUCCESS, bank_txn_id=txn[:64], payment_id=pid
        )


def reconciliation(batch: BankBatch) -> dict:
    """Lines by state with amounts, and the suspense list (mismatches and lines with no result)."""
    by_state = {
        s: {"count": c, "amount": money_str(a or ZERO)}
        for s, c, a in BankBatchLine.objects.filter(batch=batch)
        .values_list("state")
        .annotate(c=models_count(), a=Sum("amount"))
        .values_list("state", "c", "a")
    }
    suspense = list(
        BankBatchLine.objects.filter(
            batch=batch, state__in=[BankBatchLine.State.MISMATCH, BankBatchLine.State.PENDING]
        )
        .select_related("account")
        .order_by("line_no")[:500]
    )
    return {"batch": batch, "by_state": by_state, "suspense": suspense, "report": batch.report}


def models_count():
    from django.db.models import Count

    return Count("id")
