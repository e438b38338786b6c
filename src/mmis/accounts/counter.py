"""Counter payments (坐收) from the API on PostgreSQL: the lean, group-committed path.

`take_payment` (services) is the general use case: any channel, designated bills, prepaid cost
control, every error. An ordinary counter payment from the API (cash, POS or cheque, no
designated bill) takes this path instead, and ends in exactly the same rows: the payment entry
and its lines, the late fees it charges, the allocations (oldest debt first, by the same pure
`rules.plan_payment` and the org's policy), the payment row with its Idempotency-Key and request
hash, and the audit record.

Group commit: payments arriving at the same time in one server process are posted together, in
ONE transaction of a few set-based statements:

1. resolve each caller (API token or signed-in user: active, token neither revoked nor expired,
   a paying role, the account's org inside the caller's data scope), the account, the caller's
   open cashier session and any payment already holding the Idempotency-Key, and lock the
   accounts (FOR NO KEY UPDATE, in id order: no deadlock with other batches or bulk postings);
2. once locked: the sessions (FOR KEY SHARE: a daily close waits for these payments, and a
   closed session is seen), whether their day is locked, the balances, the open debts with their
   late-fee facts and the approved waivers/plans;
3. plan each payment in Python; 4. one INSERT statement for every row of every payment; COMMIT.

Each statement is prepared once per connection. The caller's identity, roles and scope are read
live in the statement that takes the lock: nothing is cached that a revoked token, role or grant
could outlive. A batch holds at most one payment per account and per key. Anything out of the
ordinary (a replayed key, no open session, a closed session or locked day, a prepaid account, an
unknown caller or account, no role, out of scope) is declined with no write: that request then
takes the general path, which gives the precise answer or error. If the batch fails as a whole
(a key posted a moment ago by another process), each payment is retried alone, then declined.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from django.db import IntegrityError, connection, transaction

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
    DayLock,
    EntryKind,
    LedgerEntry,
    LedgerLine,
    Payment,
    PrepaidAccount,
)
from mmis.accounts.services import local_date, new_number, policy_for
from mmis.common.money import ZERO, money_str
from mmis.customers.models import Account
from mmis.org.models import ApiToken, AuditLog, DataScopeGrant, Org, Role, User
from mmis.org.services import LAST_USED_RESOLUTION

MAX_BATCH = 32


def available() -> bool:
    """Whether counter payments from the API take this path (PostgreSQL)."""
    return connection.vendor == "postgresql"


@dataclass(eq=False)
class CounterPayment:
    """One API counter payment: who asks (API `token`, or `user_id` of a signed-in user), what.
    `amount` is parsed (services.parse_amount), `channel` a counter channel, `body` the request
    as the API hashes it for the Idempotency-Key. `result` is the API's payment body once
    posted, None when declined (the general path answers)."""

    token: str | None
    user_id: int | None
    account_no: str
    amount: Decimal
    channel: str
    roles: tuple[str, ...]
    idempotency_key: str
    body: dict
    at: datetime
    reference: str = ""
    result: dict | None = None
    error: BaseException | None = None
    lead: bool = False
    done: threading.Event = field(default_factory=threading.Event)


def take_counter_payment(**kwargs: Any) -> dict | None:
    """Post one counter payment (arguments of `CounterPayment`), together with any others arriving
    at the same moment in this process; the API's payment body, or None when declined."""
    req = CounterPayment(**kwargs)
    if not available() or req.channel not in COUNTER_CHANNELS or (req.token is None and req.user_id is None):
        return None
    _submit(req)
    if req.error is not None:
        raise req.error
    return req.result


# --- group commit -------------------------------------------------------------------------------
# The first request to arrive leads: it posts what is queued (up to MAX_BATCH) in one transaction
# on its own connection, answers those requests, and hands the lead to the next waiting request,
# if any. No timer: a batch is whatever arrived while the previous one was being posted.
_lock = threading.Lock()
_queue: list[CounterPayment] = []
_leading = [False]


def _submit(req: CounterPayment) -> None:
    with _lock:
        _queue.append(req)
        lead = not _leading[0]
        if lead:
            _leading[0] = True
    if not lead:
        req.done.wait()
        if not req.lead:
            return
        req.done.clear()  # handed the lead with its own payment still queued
    while True:
        with _lock:
            batch = _take_batch()
        try:
            _post_batch(batch)
        finally:
            for r in batch:
                if r is not req:
                    r.done.set()
            with _lock:
                nxt = next((r for r in _queue if r is not req), None)
                if req in batch:
                    # own payment answered: hand the lead on (or stop leading)
                    if nxt is None:
                        _leading[0] = False
                    else:
                        nxt.lead = True
                        nxt.done.set()
        if req in batch:
            return


def _take_batch() -> list[CounterPayment]:
    """Up to MAX_BATCH queued payments, at most one per account and per key (the oldest); the
    others stay queued for the next batch. Called with `_lock` held."""
    batch: list[CounterPayment] = []
    accounts: set[str] = set()
    keys: set[str] = set()
    for r in list(_queue):
        if len(batch) >= MAX_BATCH:
            break
        if r.account_no in accounts or r.idempotency_key in keys:
            continue
        accounts.add(r.account_no)
        keys.add(r.idempotency_key)
        batch.append(r)
        _queue.remove(r)
    return batch


def _post_batch(batch: list[CounterPayment]) -> None:
    """Post the batch in one transaction; if it fails as a whole on a constraint, each payment
    alone; a payment that still fails alone is declined."""
    try:
        _post(batch)
    except (IntegrityError, psycopg.IntegrityError):
        if len(batch) == 1:
            batch[0].result = None
            return
        for r in batch:
            _post_batch([r])
    except BaseException as exc:  # answered to every request of the batch (a 500 each)
        for r in batch:
            r.error = exc
        raise


def take_counter_payments(requests: list[CounterPayment]) -> list[dict | None]:
    """Post these payments as batches (one per round of distinct accounts and keys), without the
    queue: what `_submit` does with whatever arrives at once. Results in the order given."""
    todo = list(requests)
    while todo:
        batch, seen_acc, seen_key, rest = [], set(), set(), []
        for r in todo:
            if r.account_no in seen_acc or r.idempotency_key in seen_key or len(batch) >= MAX_BATCH:
                rest.append(r)
            else:
                seen_acc.add(r.account_no)
                seen_key.add(r.idempotency_key)
                batch.append(r)
        _post_batch(batch)
        todo = rest
    return [r.result for r in requests]


# --- the statements -----------------------------------------------------------------------------
def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _build_sql() -> dict[str, str]:
    t = {
        "user": _table(User),
        "token": _table(ApiToken),
        "user_roles": connection.ops.quote_name(User.roles.through._meta.db_table),
        "role": _table(Role),
        "grant": _table(DataScopeGrant),
        "org": _table(Org),
        "account": _table(Account),
        "prepaid": _table(PrepaidAccount),
        "session": _table(CashierSession),
        "daylock": _table(DayLock),
        "payment": _table(Payment),
        "entry": _table(LedgerEntry),
        "line": _table(LedgerLine),
        "alloc": _table(Allocation),
        "approval": _table(Approval),
        "audit": _table(AuditLog),
        "entry_seq": f"{LedgerEntry._meta.db_table}_id_seq",
        "debt_kinds": ", ".join(f"'{k}'" for k in DEBT_KINDS),
        "plan_kinds": ", ".join(
            f"'{k}'"
            for k in (Approval.Kind.LATE_FEE_WAIVER, Approval.Kind.INSTALMENT, Approval.Kind.DEFERRAL)
        ),
    }
    # JIT off for the rest of the transaction: a generic plan's row estimate for the batch (100)
    # can put the locked reads over jit_above_cost, and compiling costs far more than they do
    resolve = """SELECT r.idx, u.id, u.username, u.display_name, t.id, t.last_used_at,
       a.id, a.org_id, o.path, a.account_no,
       EXISTS (SELECT 1 FROM {prepaid} pp WHERE pp.account_id = a.id),
       u.is_superuser OR EXISTS (SELECT 1 FROM {user_roles} ur JOIN {role} ro ON ro.id = ur.role_id
                                 WHERE ur.user_id = u.id AND ro.code = ANY(string_to_array(r.roles, ','))),
       u.is_superuser OR EXISTS (SELECT 1 FROM {grant} g JOIN {org} go ON go.id = g.org_id
                                 WHERE g.user_id = u.id AND starts_with(o.path, go.path)),
       (SELECT cs.id FROM {session} cs WHERE cs.cashier_id = u.id AND cs.state = 'open' LIMIT 1),
       EXISTS (SELECT 1 FROM {payment} p WHERE p.idempotency_key = r.key),
       nextval('{entry_seq}')
FROM (SELECT set_config('jit', 'off', true)) AS no_jit,
     json_to_recordset(%s::json)
  AS r(idx int, token_hash text, user_id bigint, account_no text, key text, at timestamptz, roles text)
LEFT JOIN {token} t ON t.secret_hash = r.token_hash AND t.revoked_at IS NULL
                   AND (t.expires_at IS NULL OR t.expires_at > r.at)
JOIN {user} u ON u.id = COALESCE(t.user_id, r.user_id) AND u.is_active
JOIN {account} a ON a.account_no = r.account_no
JOIN {org} o ON o.id = a.org_id
ORDER BY a.id
FOR NO KEY UPDATE OF a""".format(**t)
    # after the locks (nothing else posts on these accounts now): one row per payment. The
    # account's entries are found by its index only (`kind || ''`: never by the kind index, which
    # matches most of the ledger; a plan that chose it on stale statistics would read it all)
    locked = """SELECT x.idx, cs.state, cs.org_id, cs.business_date,
  EXISTS (SELECT 1 FROM {daylock} d WHERE d.org_id = cs.org_id AND d.business_date = cs.business_date),
  (SELECT COALESCE(SUM(b.amount), 0) FROM {entry} b WHERE b.account_id = x.account_id),
  (SELECT COALESCE(json_agg(json_build_array(id, kind, open::text, due_date, refers_to_id,
                                             late_fee_class, fee_through)), '[]')::text
   FROM (SELECT e.id, e.kind, e.due_date, e.refers_to_id, e.late_fee_class,
                e.amount - COALESCE((SELECT SUM(al.amount) FROM {alloc} al WHERE al.debit_id = e.id), 0)
                  AS open,
                CASE WHEN e.kind <> 'late_fee' THEN
                  (SELECT MAX(f.business_date) FROM {entry} f
                   WHERE f.refers_to_id = e.id AND (f.kind || '') = 'late_fee') END AS fee_through
         FROM {entry} e WHERE e.account_id = x.account_id AND (e.kind || '') IN ({debt_kinds})) open_debts
   WHERE open > 0),
  (SELECT COALESCE(json_agg(json_build_array(ap.kind, ap.target_id, ap.valid_until)), '[]')::text
   FROM {approval} ap
   WHERE ap.account_id = x.account_id AND ap.state = 'approved' AND ap.kind IN ({plan_kinds}))
FROM json_to_recordset(%s::json) AS x(idx int, account_id bigint, session_id bigint)
JOIN {session} cs ON cs.id = x.session_id
FOR KEY SHARE OF cs""".format(**t)
    # every row of every payment of the batch in one statement
    post = """WITH e AS (
  INSERT INTO {entry} (id, org_id, account_id, kind, document_no, amount, due_date, business_date,
                       posted_at, source_type, source_id, reverses_id, refers_to_id, origin_id,
                       late_fee_class, actor_id, memo)
  SELECT id, org, acc, kind, doc, amount, due, bd, at, '', NULL, NULL, ref, origin, '', actor, memo
  FROM json_to_recordset(%(rows)s::json -> 'e')
    AS x(id bigint, org bigint, acc bigint, kind text, doc text, amount numeric, due date, bd date,
         at timestamptz, ref bigint, origin bigint, actor bigint, memo text)
), l AS (
  INSERT INTO {line} (entry_id, account_id, gl, amount)
  SELECT entry, acc, gl, amount FROM json_to_recordset(%(rows)s::json -> 'l')
    AS x(entry bigint, acc bigint, gl text, amount numeric)
), al AS (
  INSERT INTO {alloc} (account_id, credit_id, debit_id, component, amount, at, by_entry_id)
  SELECT acc, credit, debit, component, amount, at, credit FROM json_to_recordset(%(rows)s::json -> 'a')
    AS x(acc bigint, credit bigint, debit bigint, component text, amount numeric, at timestamptz)
), p AS (
  SELECT * FROM json_to_recordset(%(rows)s::json -> 'p')
    AS x(entry bigint, org bigint, entry_org bigint, acc bigint, channel text, amount numeric,
         at timestamptz, bd date, receipt text, key text, hash text, session bigint, actor bigint,
         ref text, name text, repr text, after jsonb)
), au AS (
  INSERT INTO {audit} (at, actor_id, actor_name, action, target_type, target_id, target_repr, org_id,
                       before, after, reason)
  SELECT at, actor, name, 'payment.take', %(target_type)s::text, entry::text, repr, entry_org, NULL, after, ''
  FROM p
)
INSERT INTO {payment} (entry_id, org_id, account_id, channel, amount, paid_at, business_date, receipt_no,
                       channel_txn_id, idempotency_key, request_hash, session_id, cashier_id, reference)
SELECT entry, org, acc, channel, amount, at, bd, receipt, '', key, hash, session, actor, ref FROM p
RETURNING entry_id, id""".format(**t)
    return {
        "resolve": resolve,
        "locked": locked,
        "post": post,
        "ids": f"SELECT nextval('{t['entry_seq']}') FROM generate_series(1, %s::int)",
        "touch_token": f"UPDATE {t['token']} SET last_used_at = %s::timestamptz WHERE id = %s::bigint"
        " AND (last_used_at IS NULL OR last_used_at <= %s::timestamptz)",
    }


_SQL: dict[str, str] = {}


def _execute(cur, sql: str, params: Any) -> None:
    """A prepared statement on the raw connection, logged like Django's own queries when the
    connection logs them (tests, DEBUG)."""
    if not connection.queries_logged:
        cur.execute(sql, params, prepare=True)
        return
    start = time.monotonic()
    try:
        cur.execute(sql, params, prepare=True)
    finally:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _debts(debts_json: str, approvals_json: str, *, on: date, plans_waive: bool = True) -> list[rules.Debt]:
    """`services._debts(account, on=on)` from what the batch read: same facts, same gating (the
    late-fee facts only when a debt is overdue on `on`)."""
    rows = [
        (pk, kind, Decimal(open_), _day(due), refers_to, fee_class, _day(through))
        for pk, kind, open_, due, refers_to, fee_class, through in json.loads(debts_json)
    ]
    overdue = any(
        due is not None and due < on for _id, kind, _o, due, _r, _c, _f in rows if kind != EntryKind.LATE_FEE
    )
    waived_ids: set[int] = set()
    plan_active = False
    if overdue:
        for kind, target_id, until in json.loads(approvals_json):
            if kind == Approval.Kind.LATE_FEE_WAIVER:
                waived_ids.add(target_id)
            elif until is not None and _day(until) >= on:
                plan_active = plans_waive
    out = []
    for pk, kind, open_, due, refers_to, fee_class, through in rows:
        is_fee = kind == EntryKind.LATE_FEE
        through = through if overdue and not is_fee else None
        out.append(
            rules.Debt(
                id=pk,
                open=open_,
                due_date=due,
                is_late_fee=is_fee,
                parent_id=refers_to if is_fee else None,
                late_fee_class="" if is_fee else fee_class,
                fee_charged_before=through is not None,
                fee_through=through,
                waived=pk in waived_ids or plan_active,
            )
        )
    return out


def _post(batch: list[CounterPayment]) -> None:
    """One transaction for the batch (distinct accounts and keys); sets each request's result.
    Row sets travel as one JSON parameter per statement (cheap to send, exact decimals as text)."""
    if not _SQL:
        _SQL.update(_build_sql())
    sql = _SQL
    for r in batch:
        r.result = None
    touch: dict[int, tuple[datetime, datetime]] = {}
    with transaction.atomic():
        connection.ensure_connection()
        cur = psycopg.Cursor(connection.connection)  # server-side binding: prepared statements
        reqs = [
            {
                "idx": i,
                "token_hash": hashlib.sha256(r.token.encode()).hexdigest() if r.token is not None else None,
                "user_id": r.user_id if r.token is None else None,
                "account_no": r.account_no,
                "key": r.idempotency_key,
                "at": r.at.isoformat(),
                "roles": ",".join(r.roles),
            }
            for i, r in enumerate(batch)
        ]
        _execute(cur, sql["resolve"], [json.dumps(reqs)])
        found: dict[int, tuple] = {}
        for row in cur.fetchall():
            (idx, _uid, _name, _display, _tok, _used, _acc, _org, _path, _no,
             has_prepaid, may_pay, in_scope, session_id, replayed, _eid) = row  # fmt: skip
            if not has_prepaid and may_pay and in_scope and session_id is not None and not replayed:
                found[idx] = row
        if not found:
            return
        locked_rows = [
            {"idx": i, "account_id": found[i][6], "session_id": found[i][13]} for i in sorted(found)
        ]
        _execute(cur, sql["locked"], [json.dumps(locked_rows)])
        plans = []
        n_fees = 0
        policies: dict[int, Any] = {}
        for idx, state, session_org, business_date, day_locked, balance, debts_json, approvals_json in cur:
            if state != CashierSession.State.OPEN or day_locked:
                continue
            r = batch[idx]
            on = local_date(r.at)
            org_id, org_path = found[idx][7], found[idx][8]
            pol = policies.get(org_id)
            if pol is None:
                pol = policies[org_id] = policy_for(Org(pk=org_id, path=org_path))
            plan = rules.plan_payment(
                amount=r.amount,
                debts=_debts(debts_json, approvals_json, on=on, plans_waive=not pol.late_fee_during_plan),
                paid_on=on,
                order=pol.allocation_order,
                minimum=pol.late_fee_minimum,
                minimum_scope=pol.minimum_scope,
                charge_late_fees=True,
                basis=pol.late_fee_basis,
            )
            n_fees += len(plan.fees)
            plans.append((idx, session_org, business_date, balance, plan))
        if not plans:
            return
        fee_ids: list[int] = []
        if n_fees:
            _execute(cur, sql["ids"], [n_fees])
            fee_ids = [row[0] for row in cur.fetchall()]
        entries: list[dict] = []
        lines: list[dict] = []
        allocs: list[dict] = []
        pays: list[dict] = []
        answers: dict[int, tuple[int, dict]] = {}
        for idx, session_org, business_date, balance, plan in plans:
            r = batch[idx]
            (_i, uid, username, display_name, token_id, last_used, acc_id, org_id, _path, acc_no,
             _p, _m, _s, session_id, _r, entry_id) = found[idx]  # fmt: skip
            on = local_date(r.at)
            at = r.at.isoformat()
            bd = business_date.isoformat()
            amount = str(r.amount)
            receipt_no = new_number("SK", business_date)
            # the payment entry, then the late fees it charges (ids in that order, as take_payment)
            entries.append(
                {
                    "id": entry_id,
                    "org": org_id,
                    "acc": acc_id,
                    "kind": EntryKind.PAYMENT.value,
                    "doc": receipt_no,
                    "amount": str(-r.amount),
                    "due": None,
                    "bd": bd,
                    "at": at,
                    "ref": None,
                    "origin": None,
                    "actor": uid,
                    "memo": str(Channel(r.channel).label)[:200],
                }
            )
            lines.append(
                {"entry": entry_id, "acc": acc_id, "gl": GL.RECEIVABLE.value, "amount": str(-r.amount)}
            )
            lines.append(
                {"entry": entry_id, "acc": None, "gl": CHANNEL_GL[r.channel].value, "amount": amount}
            )
            fee_of: dict[int, int] = {}
            for debt_id, fee, days in plan.fees:
                fid = fee_ids.pop(0)
                fee_of[debt_id] = fid
                entries.append(
                    {
                        "id": fid,
                        "org": org_id,
                        "acc": acc_id,
                        "kind": EntryKind.LATE_FEE.value,
                        "doc": new_number("WYJ", on),
                        "amount": str(fee),
                        "due": bd,
                        "bd": on.isoformat(),
                        "at": at,
                        "ref": debt_id,
                        "origin": entry_id,
                        "actor": uid,
                        "memo": f"违约金 {days} 天",
                    }
                )
                lines.append({"entry": fid, "acc": acc_id, "gl": GL.RECEIVABLE.value, "amount": str(fee)})
                lines.append({"entry": fid, "acc": None, "gl": GL.LATE_FEE_INCOME.value, "amount": str(-fee)})
            for (what, pk), component, part in plan.allocations:
                allocs.append(
                    {
                        "acc": acc_id,
                        "credit": entry_id,
                        "debit": fee_of[pk] if what == "fee" else pk,
                        "component": component,
                        "amount": str(part),
                        "at": at,
                    }
                )
            after = {
                "account": acc_no,
                "amount": amount,
                "channel": r.channel,
                "receipt_no": receipt_no,
                "txn": "",
            }
            pays.append(
                {
                    "entry": entry_id,
                    "org": session_org,
                    "entry_org": org_id,
                    "acc": acc_id,
                    "channel": r.channel,
                    "amount": amount,
                    "at": at,
                    "bd": bd,
                    "receipt": receipt_no,
                    "key": r.idempotency_key,
                    "hash": hashlib.sha256(
                        json.dumps({"u": uid, **r.body}, sort_keys=True).encode()
                    ).hexdigest(),
                    "session": session_id,
                    "actor": uid,
                    "ref": r.reference[:64],
                    "name": (display_name or username)[:150],
                    "repr": f"{receipt_no} {EntryKind.PAYMENT.value} {-r.amount}"[:200],
                    "after": after,
                }
            )
            fees = sum((f for _d, f, _n in plan.fees), ZERO)
            answers[entry_id] = (
                idx,
                {
                    "receipt_no": receipt_no,
                    "account_no": acc_no,
                    "amount": money_str(r.amount),
                    "channel": r.channel,
                    "paid_at": at,
                    "business_date": bd,
                    "balance": money_str(balance - r.amount + fees),
                    "reversed": False,
                },
            )
            if token_id is not None and (last_used is None or r.at - last_used >= LAST_USED_RESOLUTION):
                touch[token_id] = (r.at, r.at - LAST_USED_RESOLUTION)
        rows = json.dumps({"e": entries, "l": lines, "a": allocs, "p": pays})
        _execute(cur, sql["post"], {"rows": rows, "target_type": LedgerEntry._meta.label_lower})
        posted = {entry_id: pid for entry_id, pid in cur.fetchall()}
        for token_id, (at, stale) in touch.items():  # at most once a minute per token
            _execute(cur, sql["touch_token"], [at, token_id, stale])
    for entry_id, (idx, body) in answers.items():
        batch[idx].result = {"id": posted[entry_id], **body}
