"""Bulk writes of a partition's bills, lines, flags and exceptions: COPY on PostgreSQL (psycopg 3),
batched inserts elsewhere. Bill ids are reserved from the sequence first so lines can point at them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection

from mmis.billing.models import AuditFlag, Bill, BillLine, RunException

BILL_COLUMNS = (
    "id",
    "number",
    "run_id",
    "partition_id",
    "org_id",
    "customer_id",
    "account_id",
    "point_id",
    "period_start",
    "period_end",
    "tariff_code",
    "tariff_version_id",
    "state",
    "energy_kwh",
    "amount",
    "estimated",
    "prorated",
    "risk",
    "flags",
    "trace",
    "return_reason",
)
LINE_COLUMNS = ("bill_id", "seq", "segment", "code", "quantity", "price", "amount")
FLAG_COLUMNS = ("bill_id", "code", "message", "weight")
EXC_COLUMNS = ("run_id", "partition_id", "point_id", "reason", "message")


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def reserve_bill_ids(n: int) -> list[int]:
    """n fresh ids for bills: from the table's sequence on PostgreSQL; elsewhere (SQLite, inside
    the partition's write transaction, which holds the database's write lock) after the max."""
    if n == 0:
        return []
    with connection.cursor() as cur:
        if is_postgres():
            cur.execute(
                "SELECT array_agg(nextval(pg_get_serial_sequence(%s, 'id'))) FROM generate_series(1, %s)",
                [Bill._meta.db_table, n],
            )
            return sorted(cur.fetchone()[0])
        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Bill._meta.db_table}")
        first = cur.fetchone()[0] + 1
    return list(range(first, first + n))


def _esc(s: str) -> str:
    """COPY text format: backslash, tab, newline and carriage return escaped."""
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _copy(table: str, columns: Sequence[str], rows_text: Iterable[str]) -> None:
    with connection.cursor() as cur:
        raw = cur.cursor  # psycopg 3 cursor under Django's wrapper
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        buf: list[str] = []
        with raw.copy(sql) as copy:
            for line in rows_text:
                buf.append(line)
                if len(buf) >= 20000:
                    copy.write("".join(buf))
                    buf = []
            if buf:
                copy.write("".join(buf))


def write_bills(bills: list, lines: list, flags: list, exceptions: list) -> None:
    """Insert rows given as tuples in the column orders above (or, on PostgreSQL, as ready COPY text
    lines); `bills[i][0]` is a reserved id (`reserve_bill_ids`) that `lines` and `flags` refer to.
    COPY on PostgreSQL, batched parameterised inserts elsewhere (no model instances either way)."""
    if is_postgres():
        _copy(Bill._meta.db_table, BILL_COLUMNS, (b if isinstance(b, str) else _bill_text(b) for b in bills))
        _copy(
            BillLine._meta.db_table,
            LINE_COLUMNS,
            (r if isinstance(r, str) else "\t".join(map(str, r)) + "\n" for r in lines),
        )
        _copy(
            AuditFlag._meta.db_table,
            FLAG_COLUMNS,
            (r if isinstance(r, str) else "\t".join(_esc(str(x)) for x in r) + "\n" for r in flags),
        )
        _copy(
            RunException._meta.db_table,
            EXC_COLUMNS,
            ("\t".join(_esc(str(x)) for x in r) + "\n" for r in exceptions),
        )
        return
    _insert_many(Bill._meta.db_table, BILL_COLUMNS, bills)
    _insert_many(BillLine._meta.db_table, LINE_COLUMNS, lines)
    _insert_many(AuditFlag._meta.db_table, FLAG_COLUMNS, flags)
    _insert_many(RunException._meta.db_table, EXC_COLUMNS, exceptions)


def lines_of(bill_ids: Sequence[int]) -> list[tuple[int, str, Any]]:
    """(bill id, code, amount) of the bills' lines in bill and line order; on PostgreSQL one index
    probe per bill (a LATERAL join), whatever the statistics say of the lines table."""
    if not bill_ids:
        return []
    if not is_postgres():
        return list(
            BillLine.objects.filter(bill_id__in=list(bill_ids))
            .order_by("bill_id", "seq")
            .values_list("bill_id", "code", "amount")
        )
    with connection.cursor() as cur:
        cur.execute(
            f"""SELECT x.bill_id, x.code, x.amount FROM unnest(%s::bigint[]) AS u(bid) CROSS JOIN LATERAL (
                  SELECT l.bill_id, l.seq, l.code, l.amount FROM {BillLine._meta.db_table} l
                  WHERE l.bill_id = u.bid ORDER BY l.seq LIMIT 1000) x
                ORDER BY x.bill_id, x.seq""",
            [sorted(bill_ids)],
        )
        return cur.fetchall()


def replace_flags(bill_ids: Sequence[int], rows: list[tuple]) -> None:
    """The audit flags of these bills replaced by `rows` (FLAG_COLUMNS tuples)."""
    t = AuditFlag._meta.db_table
    with connection.cursor() as cur:
        if is_postgres():
            cur.execute(
                f"""SELECT x.id FROM unnest(%s::bigint[]) AS u(bid) CROSS JOIN LATERAL (
                      SELECT t.id FROM {t} t WHERE t.bill_id = u.bid LIMIT 1000) x""",
                [list(bill_ids)],
            )
            old = [r[0] for r in cur.fetchall()]
            if old:
                cur.execute(f"DELETE FROM {t} WHERE id = ANY(%s)", [old])
        else:
            for i in range(0, len(bill_ids), 5000):
                chunk = list(bill_ids[i : i + 5000])
                cur.execute(f"DELETE FROM {t} WHERE bill_id IN ({', '.join(['%s'] * len(chunk))})", chunk)
    if is_postgres():
        _copy(t, FLAG_COLUMNS, ("\t".join(_esc(str(x)) for x in r) + "\n" for r in rows))
    else:
        _insert_many(t, FLAG_COLUMNS, rows)


def _insert_many(table: str, columns: Sequence[str], rows: list[tuple], batch: int = 5000) -> None:
    if not rows:
        return
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    with connection.cursor() as cur:
        for i in range(0, len(rows), batch):
            cur.executemany(sql, rows[i : i + batch])


def _bill_text(b: tuple) -> str:
    out = []
    for v in b:
        if v is None:
            out.append("\\N")
        elif isinstance(v, bool):
            out.append("t" if v else "f")
        elif isinstance(v, str):
            out.append(_esc(v))
        else:
            out.append(str(v))
    return "\t".join(out) + "\n"


def delete_partition_drafts(partition_id: int, point_ids: Sequence[int], month_start, month_end) -> int:
    """Remove the partition's earlier output and any not-issued bill of its points for the month
    (an earlier run's), with their lines and flags; issued (and settled) bills are never touched."""
    keep = (Bill.State.ISSUED, Bill.State.SETTLED)
    b, ln, fl = Bill._meta.db_table, BillLine._meta.db_table, AuditFlag._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"DELETE FROM {RunException._meta.db_table} WHERE partition_id = %s", [partition_id])
        if is_postgres():
            # every lookup an index probe per point / per bill (LATERAL with LIMIT), then deletes by
            # primary key: nothing here depends on the planner's idea of the tables' sizes (a month's
            # first run writes into tables its statistics still call empty)
            cur.execute(
                f"""SELECT x.id FROM unnest(%s::bigint[]) AS u(pid) CROSS JOIN LATERAL (
                      SELECT b.id FROM {b} b WHERE b.point_id = u.pid AND b.period_start >= %s
                        AND b.period_start < %s AND b.state NOT IN (%s, %s) LIMIT 31) x
                    UNION
                    SELECT id FROM {b} WHERE partition_id = %s AND state NOT IN (%s, %s)""",
                [list(point_ids), month_start, month_end, *keep, partition_id, *keep],
            )
            gone = [r[0] for r in cur.fetchall()]
            if not gone:
                return 0
            for table in (ln, fl):
                cur.execute(
                    f"""SELECT x.id FROM unnest(%s::bigint[]) AS u(bid) CROSS JOIN LATERAL (
                          SELECT t.id FROM {table} t WHERE t.bill_id = u.bid LIMIT 1000) x""",
                    [gone],
                )
                rows = [r[0] for r in cur.fetchall()]
                if rows:
                    cur.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", [rows])
            cur.execute(f"DELETE FROM {b} WHERE id = ANY(%s)", [gone])
            return len(gone)
        n = 0
        for i in range(0, max(len(point_ids), 1), 5000):
            chunk = list(point_ids[i : i + 5000])
            marks = ", ".join(["%s"] * len(chunk)) if chunk else "NULL"
            where = (
                f"(partition_id = %s OR (point_id IN ({marks}) AND period_start >= %s AND period_start < %s))"
                f" AND state NOT IN (%s, %s)"
            )
            params = [partition_id, *chunk, month_start, month_end, *keep]
            sub = f"SELECT id FROM {b} WHERE {where}"
            cur.execute(f"DELETE FROM {ln} WHERE bill_id IN ({sub})", params)
            cur.execute(f"DELETE FROM {fl} WHERE bill_id IN ({sub})", params)
            cur.execute(f"DELETE FROM {b} WHERE {where}", params)
            n += cur.rowcount
    return n
