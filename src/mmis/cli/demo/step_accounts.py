"""Step: receivables for the demo: released bills are paid if billing made any; otherwise
opening-balance charges for some accounts, most of them paid, a few arrears of different ages,
and some prepaid (费控) accounts with balances. Deterministic (seeded), a few hundred accounts."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from mmis.cli.demo.context import DemoContext

TZ = ZoneInfo("Asia/Shanghai")
SAMPLE = 400


def build_accounts(ctx: DemoContext) -> None:
    from django.db import transaction

    from mmis.accounts.models import LedgerEntry

    if LedgerEntry.objects.filter(source_type="demo_opening").exists():
        return
    # One transaction for the whole step: each posting's own transaction becomes a savepoint, so
    # the step pays for one commit instead of one per charge and payment (and a failed run leaves
    # nothing half-built behind).
    with transaction.atomic():
        _build(ctx)


def _build(ctx: DemoContext) -> None:
    from mmis.accounts import collection, services
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
        if i % 25 == 0:
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
    ctx.report("accounts").rows.update({"accounts_charges": posted, "accounts_payments": paid})
