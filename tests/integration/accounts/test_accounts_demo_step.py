"""The demo step builds receivables on whatever accounts exist, and is idempotent."""

from mmis.accounts import queries
from mmis.accounts.models import LedgerEntry, Payment


def test_demo_step(utility):
    from mmis.cli.demo.context import DemoContext
    from mmis.cli.demo.step_accounts import build_accounts

    ctx = DemoContext(customers=2, progress=False)
    build_accounts(ctx)
    build_accounts(ctx)
    assert LedgerEntry.objects.filter(source_type="demo_opening").count() == 2
    assert Payment.objects.exists()
    assert queries.ledger_check()["balanced"]


def test_demo_pays_part_of_the_released_bills(db):
    """With billing's released bills: withheld by the bank (a few refused), paid at the counter
    (closed and locked days, today's session open), through agency files and online (late fees
    on what was late), a minority in arrears with today's accrual and dunning actions."""
    from django.db.models import Count

    from mmis.accounts.models import (
        AgencyFile,
        BankBatchLine,
        CashierSession,
        DayLock,
        DunningAction,
        LateFeeAccrual,
    )
    from mmis.cli.demo import DemoContext, build
    from mmis.cli.demo.builder import STEPS

    steps = [
        s
        for s in STEPS
        if s.name in ("orgs", "users", "tariffs", "customers", "readings", "billing", "accounts")
    ]
    ctx = build(DemoContext(customers=80, seed=7, progress=False, log=lambda _m: None), steps)
    by_channel = dict(Payment.objects.values_list("channel").annotate(n=Count("id")))
    assert by_channel.get("bank_withholding", 0) > 0 and by_channel.get("online", 0) > 0
    assert by_channel.get("cash", 0) + by_channel.get("pos", 0) > 0
    # most bills are paid through the agencies' files, nearly all on time
    assert by_channel.get("agency", 0) > by_channel.get("online", 0)
    assert AgencyFile.objects.exists()
    assert BankBatchLine.objects.filter(state="failed").exists()
    sessions = CashierSession.objects.order_by("business_date")
    assert sessions.last().state == "open" and sessions.last().business_date == ctx.today
    closed = sessions.filter(state="closed")
    assert closed.exists() and DayLock.objects.count() == closed.count()
    assert LedgerEntry.objects.filter(kind="late_fee").exists()
    rows = queries.arrears(None, on=ctx.today, min_days=1)
    assert rows and sum(1 for r in rows if r.days > 30) > 0
    billed = LedgerEntry.objects.filter(kind="charge").values("account_id").distinct().count()
    assert len(rows) < billed * 0.3  # a minority in arrears, as at a utility
    assert LateFeeAccrual.objects.exists() and DunningAction.objects.exists()
    assert queries.ledger_check()["balanced"]
    # built once: a second run adds nothing
    count = Payment.objects.count()
    build(ctx, [s for s in STEPS if s.name == "accounts"])
    assert Payment.objects.count() == count
