"""Bank withholding (代扣) result files on PostgreSQL, set-based: the file is COPYed into a staging
table once, validated by a few set-based queries (the same per-row errors, in the same order, as
`channels._parse_results`), and the successful debits are posted by INSERT … SELECT statements
(entries, lines, oldest-first allocations by window functions, payments) in chunks of lines, each
one transaction that locks the batch row and its accounts (in id order) and posts only lines still
pending: an import run twice, even at the same moment, posts every line once.

Python only splits the CSV (C-accelerated) and checks what it checks best on the way (field count,
the line number as an integer, an amount that is not a plain "123.45", with the exact messages of
`services.parse_amount`); the joins (line in the batch, account of the line, duplicate lines and
bank transactions) run in the database.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from mmis.accounts import services
from mmis.accounts.models import (
    DEBT_KINDS,
    GL,
    Allocation,
    BankBatch,
    BankBatchLine,
    Channel,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
)
from mmis.common.errors import FieldError, InvalidInput
from mmis.customers.models import Account

SUCCESS = "0000"
STAGE = "mmis_bank_result"
PAY = "mmis_bank_pay"
# a plain amount: digits with at most two decimals (anything else goes through parse_amount)
_PLAIN_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")
MAX_ERRORS = 200


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def stage(batch: BankBatch, content: str) -> tuple[list[tuple[int, int, FieldError]], int]:
    """COPY the rows of a result file into the session's staging table; the errors found on the
    way (row, rank, error) and the number of rows staged."""
    errors: list[tuple[int, int, FieldError]] = []
    with connection.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (i int PRIMARY KEY, line_no bigint, account_no text,"
            " amount numeric(14, 2), code text, txn text)"
        )
        cur.execute(f"TRUNCATE {STAGE}")
        n = 0
        with cur.cursor.copy(f"COPY {STAGE} (i, line_no, account_no, amount, code, txn) FROM STDIN") as cp:
            for i, rec in enumerate(csv.reader(io.StringIO(content))):
                if not rec or rec[0].startswith("#"):
                    continue
                p = f"rows[{i}]"
                if len(rec) < 4:
                    errors.append(
                        (i, 0, FieldError(p, "expected line_no,account_no,amount,result_code,bank_txn_id"))
                    )
                    continue
                try:
                    line_no = int(rec[0])
                except ValueError:
                    errors.append((i, 0, FieldError(f"{p}.line_no", f"{rec[0]!r} is not a line number")))
                    continue
                code = rec[3].strip()
                text = rec[2].strip()
                amount: str | None = text
                if not _PLAIN_AMOUNT.fullmatch(text) or (code == SUCCESS and not text.strip("0.")):
                    try:
                        amount = str(services.parse_amount(rec[2], f"{p}.amount", allow_zero=code != SUCCESS))
                    except InvalidInput as exc:
                        errors += [(i, 2, e) for e in exc.errors]
                        amount = None
                if not -(2**63) <= line_no < 2**63:
                    line_no = -1  # not a line of any batch
                cp.write_row(
                    (i, line_no, rec[1].strip(), amount, code, rec[4].strip() if len(rec) > 4 else "")
                )
                n += 1
        cur.execute(f"ANALYZE {STAGE}")
    return errors, n


def validate(batch: BankBatch, content: str) -> int:
    """Stage and validate a result file; raise InvalidInput with every bad row (up to about
    MAX_ERRORS, as the Python validator) and nothing else done; the number of rows."""
    py_errors, n = stage(batch, content)
    sql = f"""
WITH s AS (
  SELECT st.*, row_number() OVER (PARTITION BY line_no ORDER BY i) AS nth FROM {STAGE} st
), j AS (
  SELECT s.*, bl.id AS line_id, a.account_no AS line_account
  FROM s LEFT JOIN {_t(BankBatchLine)} bl ON bl.batch_id = %(batch)s AND bl.line_no = s.line_no AND s.nth = 1
  LEFT JOIN {_t(Account)} a ON a.id = bl.account_id
), ok AS (
  SELECT j.*, CASE WHEN code = '{SUCCESS}' AND txn <> '' THEN
                row_number() OVER (PARTITION BY code = '{SUCCESS}' AND txn <> '', txn ORDER BY i) END
              AS txn_nth
  FROM j WHERE nth = 1 AND line_id IS NOT NULL
)
SELECT i, 0, 'line_no', 'duplicate result for line ' || line_no FROM s WHERE nth > 1
UNION ALL
SELECT i, 0, 'line_no', 'line ' || line_no || ' is not in batch ' || %(batch_no)s FROM j
WHERE nth = 1 AND line_id IS NULL
UNION ALL
SELECT i, 1, 'account_no', 'unknown account ' || account_no || ' for line ' || line_no FROM ok
WHERE account_no <> line_account
UNION ALL
SELECT i, 3, 'bank_txn_id', 'is required for a successful debit' FROM ok WHERE code = '{SUCCESS}' AND txn = ''
UNION ALL
SELECT i, 3, 'bank_txn_id', 'duplicate bank transaction ' || txn FROM ok WHERE txn_nth > 1
UNION ALL
SELECT i, 3, 'bank_txn_id', 'bank transaction ' || txn || ' is already posted' FROM ok
WHERE txn_nth = 1
  AND EXISTS (SELECT 1 FROM {_t(Payment)} p
              WHERE p.channel = '{Channel.BANK_WITHHOLDING.value}' AND p.channel_txn_id = ok.txn)
ORDER BY 1, 2
LIMIT {MAX_ERRORS * 4}"""
    with connection.cursor() as cur:
        cur.execute(sql, {"batch": batch.pk, "batch_no": batch.batch_no})
        sql_errors = [
            (i, rank, FieldError(f"rows[{i}].{field}", msg)) for i, rank, field, msg in cur.fetchall()
        ]
        # an amount is not checked on a row refused for its line (as the Python validator does)
        skipped = {i for i, rank, _e in sql_errors if rank == 0}
    found = sorted(
        [e for e in py_errors if not (e[1] == 2 and e[0] in skipped)] + sql_errors, key=lambda e: (e[0], e[1])
    )
    if found:
        errors: list[FieldError] = []
        for k, (i, _rank, e) in enumerate(found):
            errors.append(e)
            # as the Python validator: stop after the row that takes the count past MAX_ERRORS
            if len(errors) > MAX_ERRORS and (k + 1 == len(found) or found[k + 1][0] != i):
                break
        raise InvalidInput(errors)
    return n


def report_counts(batch: BankBatch) -> dict:
    """Paid / failed / mismatch rows of the staged file (amounts as the Python path sums them)."""
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT
              count(*) FILTER (WHERE s.code = '{SUCCESS}' AND s.amount = bl.amount),
              COALESCE(SUM(s.amount) FILTER (WHERE s.code = '{SUCCESS}' AND s.amount = bl.amount), 0),
              count(*) FILTER (WHERE s.code <> '{SUCCESS}'),
              count(*) FILTER (WHERE s.code = '{SUCCESS}' AND s.amount <> bl.amount),
              COALESCE(SUM(s.amount) FILTER (WHERE s.code = '{SUCCESS}' AND s.amount <> bl.amount), 0),
              min(s.line_no), max(s.line_no)
            FROM {STAGE} s JOIN {_t(BankBatchLine)} bl ON bl.batch_id = %s AND bl.line_no = s.line_no""",
            [batch.pk],
        )
        paid, paid_amount, failed, mismatch, mismatch_amount, lo, hi = cur.fetchone()
    return {
        "paid": paid,
        "paid_amount": Decimal(paid_amount),
        "failed": failed,
        "mismatch": mismatch,
        "mismatch_amount": Decimal(mismatch_amount),
        "lo": lo,
        "hi": hi,
    }


def mark_unpaid(batch: BankBatch) -> None:
    """Failed debits and amount mismatches (挂账) marked on their lines, with the bank's code."""
    with connection.cursor() as cur:
        cur.execute(
            f"""UPDATE {_t(BankBatchLine)} bl
                SET state = CASE WHEN s.code = '{SUCCESS}' THEN %s ELSE %s END, result_code = s.code
                FROM {STAGE} s
                WHERE bl.batch_id = %s AND bl.line_no = s.line_no
                  AND (s.code <> '{SUCCESS}' OR s.amount <> bl.amount)""",
            [BankBatchLine.State.MISMATCH, BankBatchLine.State.FAILED, batch.pk],
        )


def post_chunk(*, batch: BankBatch, lo: int, hi: int, actor, at: datetime) -> int:
    """Post the successful debits of lines lo..hi still pending, in one transaction (see above)."""
    t = {
        "entry": _t(LedgerEntry),
        "line": _t(LedgerLine),
        "alloc": _t(Allocation),
        "payment": _t(Payment),
        "bl": _t(BankBatchLine),
        "account": _t(Account),
        "entry_seq": f"{LedgerEntry._meta.db_table}_id_seq",
        "payment_seq": f"{Payment._meta.db_table}_id_seq",
        "debt_kinds": ", ".join(f"'{k}'" for k in DEBT_KINDS),
    }
    p = {
        "batch": batch.pk,
        "batch_no": batch.batch_no,
        "lo": lo,
        "hi": hi,
        "at": at,
        "bd": services.local_date(at),
        "actor": actor.pk if actor is not None and actor.pk else None,
        "memo": "银行代扣",
    }
    with transaction.atomic(), connection.cursor() as cur:
        BankBatch.objects.select_for_update().filter(pk=batch.pk).values_list("pk").first()
        cur.execute(f"DROP TABLE IF EXISTS {PAY}")
        # the lines of this chunk still pending, with their payment's ids (in line order)
        cur.execute(
            """CREATE TEMP TABLE {pay} ON COMMIT DROP AS
            SELECT x.*, nextval('{entry_seq}') AS entry_id, nextval('{payment_seq}') AS payment_id
            FROM (SELECT s.line_no, bl.id AS line_id, bl.account_id, a.org_id, s.amount, s.txn,
                         %(batch_no)s || '-'
                           || lpad(s.line_no::text, greatest(7, length(s.line_no::text)), '0') AS doc
                  FROM {stage} s
                  JOIN {bl} bl ON bl.batch_id = %(batch)s AND bl.line_no = s.line_no
                  JOIN {account} a ON a.id = bl.account_id
                  WHERE s.line_no BETWEEN %(lo)s AND %(hi)s AND s.code = '{success}'
                    AND s.amount = bl.amount AND bl.state = 'pending'
                  ORDER BY s.line_no) x""".format(pay=PAY, stage=STAGE, success=SUCCESS, **t),
            p,
        )
        cur.execute(f"SELECT count(*) FROM {PAY}")
        n = cur.fetchone()[0]
        if not n:
            return 0
        cur.execute(f"ANALYZE {PAY}")
        cur.execute(
            f"SELECT 1 FROM {t['account']} WHERE id IN (SELECT account_id FROM {PAY}) ORDER BY id"
            " FOR NO KEY UPDATE",
        )
        cur.execute(
            """INSERT INTO {entry} (id, org_id, account_id, kind, document_no, amount, due_date,
                                   business_date, posted_at, source_type, source_id, reverses_id,
                                   refers_to_id, origin_id, late_fee_class, actor_id, memo)
            SELECT entry_id, org_id, account_id, '{kind}', doc, -amount, NULL, %(bd)s, %(at)s, '', NULL, NULL,
                   NULL, NULL, '', %(actor)s, %(memo)s
            FROM {pay} ORDER BY line_no""".format(pay=PAY, kind=EntryKind.PAYMENT.value, **t),
            p,
        )
        cur.execute(
            """INSERT INTO {line} (entry_id, account_id, gl, amount)
            SELECT entry_id, acc, gl, amount FROM (
              SELECT line_no, 0 AS side, entry_id, account_id AS acc, '{receivable}' AS gl, -amount AS amount
              FROM {pay}
              UNION ALL
              SELECT line_no, 1, entry_id, NULL, '{clearing}', amount FROM {pay}) x
            ORDER BY line_no, side""".format(
                pay=PAY, receivable=GL.RECEIVABLE.value, clearing=GL.BANK_CLEARING.value, **t
            ),
        )
        # oldest debt first (rules.order_debts: due date, undated last; a late-fee document just
        # before its debt), each taking what is left of the payment; no late fee is charged
        cur.execute(
            """WITH deb AS (
              SELECT e.id, e.account_id, e.kind = 'late_fee' AS is_fee, e.due_date, e.refers_to_id,
                     e.amount - COALESCE(al.paid, 0) AS open
              FROM {entry} e
              LEFT JOIN (SELECT debit_id, SUM(amount) AS paid FROM {alloc}
                         WHERE account_id IN (SELECT account_id FROM {pay}) GROUP BY debit_id) al
                ON al.debit_id = e.id
              WHERE e.account_id IN (SELECT account_id FROM {pay}) AND e.kind IN ({debt_kinds})
            ), open AS (
              SELECT * FROM deb WHERE open > 0
            ), keyed AS (
              SELECT o.*, COALESCE(CASE WHEN par.id IS NOT NULL THEN par.due_date ELSE o.due_date END,
                                   'infinity'::date) AS k_due,
                     COALESCE(par.id, o.id) AS k_anchor
              FROM open o LEFT JOIN open par ON o.is_fee AND par.id = o.refers_to_id
            ), takes AS (
              SELECT p.account_id, p.entry_id, k.id AS debit_id, k.is_fee,
                     LEAST(k.open, GREATEST(p.amount - COALESCE(SUM(k.open) OVER w, 0), 0)) AS take,
                     k.k_due, k.k_anchor, k.id AS k_id
              FROM {pay} p JOIN keyed k ON k.account_id = p.account_id
              WINDOW w AS (PARTITION BY p.account_id
                           ORDER BY k.k_due, k.k_anchor, NOT k.is_fee, k.id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
            )
            INSERT INTO {alloc} (account_id, credit_id, debit_id, component, amount, at, by_entry_id)
            SELECT account_id, entry_id, debit_id, CASE WHEN is_fee THEN 'late_fee' ELSE 'principal' END,
                   take, %(at)s, entry_id
            FROM takes WHERE take > 0
            ORDER BY entry_id, k_due, k_anchor, NOT is_fee, k_id""".format(pay=PAY, **t),
            p,
        )
        cur.execute(
            """INSERT INTO {payment} (id, entry_id, org_id, account_id, channel, amount, paid_at,
                                     business_date, receipt_no, channel_txn_id, idempotency_key,
                                     request_hash, session_id, cashier_id, reference)
            SELECT payment_id, entry_id, org_id, account_id, '{channel}', amount, %(at)s, %(bd)s, doc, txn,
                   NULL, '', NULL, NULL, ''
            FROM {pay} ORDER BY line_no""".format(pay=PAY, channel=Channel.BANK_WITHHOLDING.value, **t),
            p,
        )
        cur.execute(
            """UPDATE {bl} bl SET state = 'paid', result_code = '{success}', bank_txn_id = p.txn,
                                  payment_id = p.payment_id
            FROM {pay} p WHERE bl.id = p.line_id""".format(pay=PAY, success=SUCCESS, **t),
        )
    return n


def clear() -> None:
    """Empty the session's staging table (it lives as long as the connection)."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT to_regclass('pg_temp.{STAGE}') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(f"TRUNCATE {STAGE}")
