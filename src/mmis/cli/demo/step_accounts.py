"""Step: receivables for the demo. When billing released bills, they are paid the way a utility
is paid: bank withholding (one batch, a few debits refused by the bank); agency collection (代收)
files, one per agency and month, with most bills paid on time and a few late (late fees charged
by the rules); the cashier's counter (cash and POS, one session per business day over the last
two weeks, closed and the day locked, today's session left open); online payments (older bills
paid in one go, late). A few accounts pay nothing: arrears of several ages, with the late fee
accrued today and the dunning ladder run on a sample. Without bills: opening-balance charges for
some accounts, most of them paid. Either way some prepaid (费控) accounts with balances.
Deterministic (seeded); a bounded number of single payments."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from mmis.cli.demo.context import DemoContext

TZ = ZoneInfo("Asia/Shanghai")
SAMPLE = 400
BILL_SOURCE = "billing.bill"
DEMO_REF = "演示"
COUNTER_DAYS = 12  # business days of counter sessions before today
COUNTER_MAX = 240  # counter payments (each a single posting: the step's time is bounded)
ONLINE_MAX = 300  # online payments
DUNNING_SAMPLE = 150  # overdue accounts the dunning ladder is run on
BANK_REFUSED = "3001"  # 余额不足
AGENCIES = ("邮储银行代收", "便民超市代收")
LATE_MAX = 200  # late agency payments (each charges late fees through the general path)


def _settle_bills(ctx: DemoContext) -> None:
    """Pay part of the released bills (see the module docstring)."""
    from collections import defaultdict

    from mmis.accounts import agency, channels, collection, queries, services
    from mmis.accounts.models import LedgerEntry
    from mmis.customers.models import Account

    rng = random.Random(ctx.seed + 7)
    today = ctx.today
    admin = ctx.users.get("admin")
    cashier = ctx.users.get("cashier")
    rows = (
        LedgerEntry.objects.filter(kind="charge", source_type=BILL_SOURCE)
        .order_by("account_id", "due_date", "pk")
        .values_list("account_id", "amount", "due_date", "business_date")
    )
    bills: dict[int, list[tuple[Decimal, date, date]]] = defaultdict(list)
    for acc_id, amount, due, posted in rows:
        bills[acc_id].append((amount, due, posted))
    accounts = {
        a.pk: a for a in Account.objects.filter(pk__in=list(bills)).select_related("org").order_by("pk")
    }
    # the cashier takes payments of the hall's county (the accounts the counter can find)
    scope = [ctx.counties[0].path] if ctx.counties else []
    # 1. bank withholding: one batch of every withholding account's open debt, exported ten days
    # ago; the bank refuses a few debits (insufficient balance)
    withheld = refused = 0
    export_at = datetime.combine(today - timedelta(days=10), time(2), tzinfo=TZ)
    batch = channels.export_batch(org=ctx.province, actor=admin, at=export_at)
    if batch.line_count:
        lines = batch.lines.select_related("account").order_by("line_no")
        out = []
        for ln in lines:
            ok = ln.line_no % 16 != 5  # one debit in 16 refused
            code = "0000" if ok else BANK_REFUSED
            txn = f"YH{batch.batch_no}{ln.line_no:07d}"
            out.append(f"{ln.line_no},{ln.account.account_no},{ln.amount},{code},{txn if ok else ''}")
            withheld += ok
            refused += not ok
        channels.import_results(
            batch=batch,
            content="\n".join(out) + "\n",
            actor=admin,
            at=export_at + timedelta(days=2),
        )
    # 2. the other accounts: most pay each bill through an agency (a bank's counters, a shop),
    # nearly all on time, a few late (late fees by the rules); the hall's county also pays at the
    # counter, some pay older bills online in one go, and a few pay nothing
    counter: dict[date, list[tuple[Account, Decimal, str]]] = defaultdict(list)
    agency_rows: dict[tuple[str, date], list[str]] = defaultdict(list)
    online = paid_lump = late = 0
    for acc_id, acc_bills in bills.items():
        acc = accounts[acc_id]
        if acc.payment_method == "bank_withholding":
            continue
        roll = rng.random()
        if roll < 0.06:
            continue  # arrears: nothing paid
        older = [b for b in acc_bills if b[1] < today - timedelta(days=45)]
        if roll < 0.14 and older and online < ONLINE_MAX:
            # older bills paid online in one go, a few days after the last one fell due (late
            # fees charged on what was overdue); the newest left to pay
            cut = older[: max(1, len(older) - rng.choice([0, 0, 1, 3]))]
            amount = sum((a for a, _d, _p in cut), Decimal("0"))
            pay_on = min(max(cut[-1][1] + timedelta(days=rng.choice([-6, -2, 3, 9, 25])), cut[-1][2]), today)
            services.take_payment(
                account=acc,
                amount=amount,
                channel="online",
                at=datetime.combine(pay_on, time(rng.randint(8, 21), rng.randint(0, 59)), tzinfo=TZ),
                actor=None,
                channel_txn_id=f"DEMOWX{acc_id}",
                reference=DEMO_REF,
            )
            online += 1
            paid_lump += len(cut)
            continue
        in_scope = any(acc.org.path.startswith(p) for p in scope)
        to_agency = acc_bills
        if in_scope and roll < 0.4 and sum(len(v) for v in counter.values()) < COUNTER_MAX:
            amount, _due, posted = acc_bills[-1]
            first = max(posted, today - timedelta(days=COUNTER_DAYS))
            day = first + timedelta(days=rng.randint(0, max((today - first).days, 0)))
            counter[day].append((acc, amount, "cash" if rng.random() < 0.8 else "pos"))
            to_agency = acc_bills[:-1]
        agent = AGENCIES[acc_id % len(AGENCIES)]
        for k, (amount, due, posted) in enumerate(to_agency):
            if late < LATE_MAX and rng.random() < 0.05:
                pay_on = due + timedelta(days=rng.randint(2, 30))
                late += pay_on <= today
            else:
                pay_on = due - timedelta(days=rng.randint(0, 12))
            pay_on = max(pay_on, posted)
            if pay_on > today:
                if rng.random() < 0.5:
                    continue  # not due yet, not paid yet
                pay_on = today
            paid_at = datetime.combine(pay_on, time(rng.randint(8, 20), rng.randint(0, 59)), tzinfo=TZ)
            agency_rows[(agent, pay_on.replace(day=1))].append(
                f"DS{acc_id}-{k},{acc.account_no},{amount},{paid_at:%Y-%m-%d %H:%M:%S}"
            )
    # the agencies' files, one per agency and month, imported the evening of today
    agency_paid = 0
    import_at = datetime.combine(today, time(23, 30), tzinfo=TZ)
    for (agent, _month), file_rows in sorted(agency_rows.items()):
        report = agency.import_file(
            org=ctx.province,
            agency=agent,
            content="txn_id,account_no,amount,paid_at\n" + "\n".join(file_rows) + "\n",
            actor=admin,
            at=import_at,
        )
        agency_paid += report["posted"]
    # 3. the cashier's days: a session per business day, closed (one short by 10.00) and the day
    # locked; today's session stays open
    sessions = 0
    counter_paid = 0
    if cashier is not None:
        for n, day in enumerate(sorted(counter)):
            opened = datetime.combine(day, time(8, 30), tzinfo=TZ)
            session = services.open_session(cashier=cashier, at=opened, opening_float="500.00")
            for k, (acc, amount, channel) in enumerate(counter[day]):
                # the cashier collects what the desk shows as due today: the bills and the late
                # fee they would charge (most counter payers come after the due date)
                due_now = sum((i.open + i.accrued_fee for i in queries.open_items(acc, on=day)), Decimal("0"))
                services.take_payment(
                    account=acc,
                    amount=due_now if due_now > 0 else amount,
                    channel=channel,
                    at=opened + timedelta(minutes=5 + 3 * k),
                    actor=cashier,
                    session=session,
                    reference=DEMO_REF,
                )
                counter_paid += 1
            sessions += 1
            if day == today:
                continue
            system = services.session_totals(session)["cash"] + session.opening_float
            services.close_session(
                session=session,
                counted_cash=system - (Decimal("10.00") if n == 1 else Decimal("0")),
                actor=cashier,
                at=datetime.combine(day, time(17, 30), tzinfo=TZ),
                note="短款10元" if n == 1 else "",
            )
            services.lock_day(
                org=session.org,
                business_date=day,
                actor=cashier,
                at=datetime.combine(day, time(18), tzinfo=TZ),
            )
    # 4. arrears: the late fee accrued today, and the dunning ladder on a sample of overdue accounts
    now = datetime.combine(today, time(7), tzinfo=TZ)
    overdue = [r.account_id for r in queries.arrears(None, on=today, min_days=1)]
    sample = sorted(rng.sample(overdue, min(DUNNING_SAMPLE, len(overdue))))
    accrued = collection.accrue_late_fees(on=today, org=ctx.stations[0].org) if ctx.stations else 0
    dunning = collection.run_dunning(on=today, at=now, account_ids=sample, actor=admin)
    ctx.report("accounts").rows.update(
        {
            "accounts_withheld": withheld,
            "accounts_withholding_refused": refused,
            "accounts_counter_payments": counter_paid,
            "accounts_counter_sessions": sessions,
            "accounts_online_payments": online,
            "accounts_agency_payments": agency_paid,
            "accounts_agency_late": late,
            "accounts_bills_paid_in_one_go": paid_lump,
            "accounts_overdue": len(overdue),
            "accounts_fee_accruals": accrued,
            "accounts_dunning_actions": sum(v for k, v in dunning.items() if k != "skipped_plan"),
        }
    )


def build_accounts(ctx: DemoContext) -> None:
    from django.db import transaction

    from mmis.accounts.models import AgencyFile, LedgerEntry, Payment

    if (
        LedgerEntry.objects.filter(source_type="demo_opening").exists()
        or Payment.objects.filter(reference=DEMO_REF).exists()
        or AgencyFile.objects.exists()
    ):
        return
    # One transaction for the whole step: each posting's own transaction becomes a savepoint, so
    # the step pays for one commit instead of one per charge and payment (and a failed run leaves
    # nothing half-built behind).
    with transaction.atomic():
        _build(ctx)


def _build(ctx: DemoContext) -> None:
    from mmis.accounts.models import LedgerEntry

    bills = LedgerEntry.objects.filter(kind="charge", source_type=BILL_SOURCE)
    if bills.exists():
        _settle_bills(ctx)
    else:
        _opening_balances(ctx)
    _prepaid(ctx)


def _opening_balances(ctx: DemoContext) -> None:
    from mmis.accounts import services
    from mmis.customers.models import Account

    rng = random.Random(ctx.seed + 7)
    today = ctx.today
    accounts = list(Account.objects.select_related("org", "customer").order_by("pk")[:SAMPLE])
    posted = paid = 0
    for i, acc in enumerate(accounts):
        months_back = rng.choice([0, 0, 0, 1, 1, 2, 3, 6, 13])
        due = today - timedelta(days=30 * months_back + rng.randint(1, 20))
        at = datetime.combine(due - timedelta(days=15), time(9), tzinfo=TZ)
        amount = Decimal(rng.randint(3000, 90000)) / 100
        entry = services.post_charge(
            account=acc,
            amount=amount,
            source_type="demo_opening",
            source_id=acc.pk,
            document_no=f"QC{acc.account_no}",
            due_date=due,
            at=at,
            actor=None,
            memo="期初欠费",
        )
        posted += 1
        if i % 10 < 7:  # most are paid, some late (late fees charged by the rules)
            pay_at = datetime.combine(due + timedelta(days=rng.choice([-5, -1, 3, 12])), time(10), tzinfo=TZ)
            if pay_at.date() <= today:
                services.take_payment(
                    account=acc,
                    amount=amount + Decimal("5.00"),
                    channel="online",
                    at=pay_at,
                    actor=None,
                    channel_txn_id=f"DEMO{entry.pk}",
                )
                paid += 1
    ctx.report("accounts").rows.update({"accounts_charges": posted, "accounts_payments": paid})


def _prepaid(ctx: DemoContext) -> None:
    """Some remote cost-control accounts (households without bank withholding) with a top-up and
    five days of estimates."""
    from mmis.accounts import collection, services
    from mmis.accounts.models import PrepaidAccount
    from mmis.customers.models import Account

    rng = random.Random(ctx.seed + 11)
    today = ctx.today
    accounts = list(
        Account.objects.exclude(payment_method="bank_withholding")
        .exclude(pk__in=PrepaidAccount.objects.values("account_id"))
        .order_by("pk")[:SAMPLE]
    )
    made = 0
    for i, acc in enumerate(accounts):
        if i % 25 == 0:
            at = datetime.combine(today - timedelta(days=20), time(9), tzinfo=TZ)
            pp = collection.enroll_prepaid(account=acc, at=at, price=Decimal("0.538"))
            services.take_payment(
                account=acc,
                amount=Decimal(rng.choice([30, 80, 200])),
                channel="online",
                at=at,
                actor=None,
                channel_txn_id=f"DEMOPP{acc.pk}",
            )
            for d in range(5):
                day = today - timedelta(days=5 - d)
                collection.record_estimate(
                    prepaid=pp,
                    day=day,
                    kwh=Decimal(rng.randint(5, 40)),
                    at=datetime.combine(day, time(23), tzinfo=TZ),
                )
            made += 1
    ctx.report("accounts").rows["accounts_prepaid"] = made
