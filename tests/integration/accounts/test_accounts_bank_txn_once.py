"""A bank transaction id posted by one withholding batch is refused in a later batch's result file
(a clear error naming the row, nothing posted), on both import paths (SQLite row by row,
PostgreSQL set-based)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mmis.accounts import channels
from mmis.accounts.models import Payment
from mmis.common.errors import InvalidInput
from mmis.customers.models import Account
from mmis_testing import bill_charge, individual_account

pytestmark = pytest.mark.django_db


def _batch(utility, acc):
    Account.objects.filter(pk=acc.pk).update(payment_method="bank_withholding")
    return channels.export_batch(org=utility.province, actor=utility.users["admin"], at=timezone.now())


def test_a_bank_transaction_is_posted_once_across_batches(utility):
    admin = utility.users["admin"]
    acc = individual_account(utility, 61, name="代扣")
    bill_charge(acc, "40.00", 1, timezone.localdate() + timedelta(days=10))
    first = _batch(utility, acc)
    line = first.lines.get()
    channels.import_results(
        batch=first,
        content=f"{line.line_no},{acc.account_no},40.00,0000,BK1\n",
        actor=admin,
        at=timezone.now(),
    )
    bill_charge(acc, "25.00", 2, timezone.localdate() + timedelta(days=40))
    second = _batch(utility, acc)
    line2 = second.lines.get()
    with pytest.raises(InvalidInput) as exc:
        channels.import_results(
            batch=second,
            content=f"{line2.line_no},{acc.account_no},25.00,0000,BK1\n",
            actor=admin,
            at=timezone.now(),
        )
    assert [(e.path, e.message) for e in exc.value.errors] == [
        ("rows[0].bank_txn_id", "bank transaction BK1 is already posted")
    ]
    assert Payment.objects.filter(account=acc).count() == 1
    second.refresh_from_db()
    assert second.state == "exported"  # the right file can still be imported
    channels.import_results(
        batch=second,
        content=f"{line2.line_no},{acc.account_no},25.00,0000,BK2\n",
        actor=admin,
        at=timezone.now(),
    )
    assert Payment.objects.filter(account=acc).count() == 2
