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
