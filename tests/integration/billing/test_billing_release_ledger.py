"""Release posts the chunk's charges in one set-based posting (accounts.services.post_charges): the
ledger ends exactly as with one post_charge per bill, prepayment included, and stays idempotent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import transaction
from test_billing_end_to_end import AT, _bill, _run, world  # noqa: F401 (world is a fixture)

from mmis.billing import inputs, services
from mmis.billing.models import Bill


class _Rollback(Exception):
    pass


class _PerBill(inputs.Source):
    """The real ledger through the per-bill path (Source.post_charge → accounts.post_charge)."""

    def post_charge(self, *, bill, lines, at, actor):
        return inputs.Source.post_charge(self, bill=bill, lines=lines, at=at, actor=actor)


def _ledger() -> dict:
    from mmis.accounts import queries as ledger
    from mmis.accounts.models import Allocation, ChargeLine, LedgerEntry, LedgerLine

    docs = dict(LedgerEntry.objects.values_list("pk", "document_no"))
    fields = ("document_no", "account_id", "kind", "amount", "due_date", "business_date", "source_type")
    fields += ("source_id", "late_fee_class", "actor_id", "memo")
    accounts = sorted(set(Bill.objects.values_list("account_id", flat=True)))
    return {
        "entries": sorted(LedgerEntry.objects.values_list(*fields), key=str),
        "lines": sorted(
            (
                (docs[e], a, g, x)
                for e, a, g, x in LedgerLine.objects.values_list("entry_id", "account_id", "gl", "amount")
            ),
            key=str,
        ),
        "charge_lines": sorted(
            (
                (docs[e], c, k, x)
                for e, c, k, x in ChargeLine.objects.values_list("entry_id", "code", "category", "amount")
            ),
            key=str,
        ),
        "allocations": sorted(
            (docs[c], docs[d], k, x, docs[b])
            for c, d, k, x, b in Allocation.objects.values_list(
                "credit_id", "debit_id", "component", "amount", "by_entry_id"
            )
        ),
        "balances": [ledger.balance(a) for a in accounts],
        "open_items": [
            [(i.entry.document_no, i.open) for i in ledger.open_items(a, on=date(2026, 4, 10))]
            for a in accounts
        ],
        "check": ledger.ledger_check()["balanced"],
    }


@pytest.mark.django_db
def test_release_posts_like_one_charge_per_bill_with_prepayment(world):  # noqa: F811
    from mmis.accounts import services as accounts

    utility, auditor = world["utility"], world["auditor"]
    run = _run(world)
    held = list(Bill.objects.filter(run=run).values_list("pk", flat=True))
    services.approve_bills(bill_ids=held, actor=auditor, at=AT)
    gci = _bill(world, "gci")
    # customer b holds 500.00 of prepayment before the release
    session = accounts.open_session(cashier=utility.users["counter_b"], at=AT)
    accounts.take_payment(
        account=gci.account,
        amount="500.00",
        channel="cash",
        at=AT,
        actor=utility.users["counter_b"],
        session=session,
    )
    try:
        with transaction.atomic(), inputs.use(_PerBill()):
            assert services.release_run(run=run, actor=auditor, at=AT) == 4
            per_bill = _ledger()
            raise _Rollback
    except _Rollback:
        pass
    assert Bill.objects.filter(run=run, state=Bill.State.ISSUED).count() == 0

    assert services.release_run(run=run, actor=auditor, at=AT) == 4
    batch = _ledger()
    assert batch == per_bill
    assert batch["check"] is True
    tou = _bill(world, "tou")
    from mmis.accounts import queries as ledger

    assert ledger.prepayment(gci.account) == 0  # b's prepayment went to its new bills
    assert ledger.balance(gci.account) == gci.amount + tou.amount - Decimal("500.00")
    res = _bill(world, "res")
    from mmis.accounts.models import ChargeLine, LedgerEntry

    entry = LedgerEntry.objects.get(source_type="billing.bill", source_id=res.pk)
    assert (entry.amount, entry.document_no, entry.due_date, entry.memo) == (
        res.amount,
        res.number,
        res.due_date,
        "2026-03 电费",
    )
    assert {c.code: c.category for c in ChargeLine.objects.filter(entry=entry)} == {
        "electricity": "residential",
        "fund": "residential",
    }
    assert services.release_run(run=run, actor=auditor, at=AT) == 0
    assert LedgerEntry.objects.filter(source_type="billing.bill").count() == 4


class _PerBillNotices(inputs.Source):
    """The real outbox through the per-bill path (Source.queue_notice → accounts.queue_notice)."""

    def queue_notice(self, *, bill, at):
        return inputs.Source.queue_notice(self, bill=bill, at=at)


def _outbox() -> list:
    from mmis.accounts.models import Notice

    fields = ("channel", "recipient", "template", "payload", "dedupe_key", "org_id", "account_id", "state")
    return sorted(Notice.objects.values_list(*fields), key=str)


@pytest.mark.django_db
def test_release_queues_the_notices_in_bulk_like_one_by_one(world, django_capture_on_commit_callbacks):  # noqa: F811
    from mmis.accounts.models import Notice

    run = _run(world)
    services.approve_bills(
        bill_ids=list(Bill.objects.filter(run=run).values_list("pk", flat=True)),
        actor=world["auditor"],
        at=AT,
    )
    try:
        with transaction.atomic(), inputs.use(_PerBillNotices()):
            services.release_run(run=run, actor=world["auditor"], at=AT)
            one_by_one = _outbox()
            raise _Rollback
    except _Rollback:
        pass
    assert Notice.objects.count() == 0
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert services.release_run(run=run, actor=world["auditor"], at=AT) == 4
    assert _outbox() == one_by_one
    assert len(one_by_one) == 4 and {n[4] for n in one_by_one} == {
        f"bill.issued:{pk}" for pk in Bill.objects.filter(run=run).values_list("pk", flat=True)
    }
    res = _bill(world, "res")
    payload = Notice.objects.get(dedupe_key=f"bill.issued:{res.pk}").payload
    assert payload["bill_no"] == res.number and payload["amount"] == str(res.amount)
    assert len(callbacks) == 1  # the chunk's notices are sent after commit, together
