"""Dunning ladder, late-fee accrual, prepaid cost control (DOMAIN §5.4, §5.6)."""

from datetime import date, datetime, timedelta
from decimal import Decimal as D
from zoneinfo import ZoneInfo

from mmis.accounts import collection, services
from mmis.accounts.models import (
    CostControlCommand,
    DisconnectionOrder,
    DunningAction,
    LateFeeAccrual,
    Notice,
    PrepaidAccount,
)
from mmis.common.errors import InvalidInput
from mmis.rating.late_fee import late_fee

TZ = ZoneInfo("Asia/Shanghai")


def at(d: date, h=9):
    return datetime(d.year, d.month, d.day, h, tzinfo=TZ)


def test_dunning_ladder_then_disconnection_order(
    utility, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.VAR_DIR = tmp_path
    acc = utility.customers["a"].accounts.get()
    services.post_charge(
        account=acc,
        amount=D("300.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=date(2026, 1, 1),
        at=at(date(2025, 12, 20)),
        actor=None,
    )
    with django_capture_on_commit_callbacks(execute=True):
        r1 = collection.run_dunning(on=date(2026, 1, 2), at=at(date(2026, 1, 2)))
    assert r1 == {"skipped_plan": 0, "reminder": 1}
    assert collection.run_dunning(on=date(2026, 1, 2), at=at(date(2026, 1, 2))) == {"skipped_plan": 0}
    with django_capture_on_commit_callbacks(execute=True):
        collection.run_dunning(on=date(2026, 1, 31), at=at(date(2026, 1, 31)))
    steps = set(DunningAction.objects.values_list("step", flat=True))
    assert steps == {"reminder", "notice", "disconnection_notice"}
    assert not DisconnectionOrder.objects.exists()  # not yet more than 30 days overdue
    collection.run_dunning(on=date(2026, 2, 7), at=at(date(2026, 2, 7)))
    order = DisconnectionOrder.objects.get()
    assert order.arrears == D("300.00") and order.state == "open"
    assert Notice.objects.filter(state="sent").count() == 3
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 3
    # the customer pays: the next run cancels the order before any crew goes out
    assert collection.run_dunning(on=date(2026, 2, 8), at=at(date(2026, 2, 8))) == {"skipped_plan": 0}
    services.take_payment(
        account=acc,
        amount="400.00",
        channel="online",
        at=at(date(2026, 2, 8), 10),
        actor=None,
        channel_txn_id="P1",
    )
    r = collection.run_dunning(on=date(2026, 2, 9), at=at(date(2026, 2, 9)))
    assert r == {"skipped_plan": 0, "orders_cancelled": 1}
    order.refresh_from_db()
    assert order.state == "cancelled" and order.closed_at == at(date(2026, 2, 9))


def _bill_on_instalment(utility):
    """A 300.00 bill due 2026-01-01 with an approved instalment plan until 2026-04-01."""
    acc = utility.customers["a"].accounts.get()
    services.post_charge(
        account=acc,
        amount=D("300.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=date(2026, 1, 1),
        at=at(date(2025, 12, 20)),
        actor=None,
    )
    ap = services.request_approval(
        kind="instalment",
        account=acc,
        actor=utility.users["counter_a"],
        at=at(date(2026, 1, 2)),
        reason="困难户分3期",
        valid_until=date(2026, 4, 1),
    )
    services.decide_approval(
        approval=ap, approve=True, actor=utility.users["manager"], at=at(date(2026, 1, 2))
    )
    return acc


def test_instalment_plan_stops_the_ladder(utility):
    _bill_on_instalment(utility)
    assert collection.run_dunning(on=date(2026, 2, 10), at=at(date(2026, 2, 10))) == {"skipped_plan": 1}


def test_late_fee_accrual_uses_the_late_fee_function(utility):
    acc = utility.customers["a"].accounts.get()
    services.post_charge(
        account=acc,
        amount=D("1000.00"),
        source_type="bill",
        source_id=1,
        document_no="B1",
        due_date=date(2026, 3, 15),
        at=at(date(2026, 3, 1)),
        actor=None,
    )
    assert collection.accrue_late_fees(on=date(2026, 4, 1)) == 1
    row = LateFeeAccrual.objects.get()
    expected = late_fee(
        principal=D("1000.00"),
        due_date=date(2026, 3, 15),
        paid_date=date(2026, 4, 1),
        customer_class="residential",
    )
    assert (row.days, row.amount) == (17, expected.amount) == (17, D("17.00"))


def test_prepaid_domain_example(utility):
    acc = utility.customers["a"].accounts.get()
    start = date(2026, 5, 1)
    services.take_payment(account=acc, amount="200.00", channel="online", at=at(start, 8), actor=None)
    pp = collection.enroll_prepaid(account=acc, at=at(start), price=D("0.538"))
    states = {}
    for n in range(1, 12):
        collection.record_estimate(
            prepaid=pp,
            day=start + timedelta(days=n - 1),
            kwh=D("35"),
            at=at(start + timedelta(days=n - 1), 23),
        )
        pp.refresh_from_db()
        states[n] = (pp.state, collection.available(pp))
    assert states[8] == ("alarm1", D("49.36"))
    assert states[10] == ("alarm2", D("11.70"))
    assert states[11] == ("negative", D("-7.13"))
    assert not CostControlCommand.objects.exists()
    collection.evaluate(prepaid=pp, at=at(start + timedelta(days=11), 23))  # grace of 24 h passed
    pp.refresh_from_db()
    assert pp.state == "disconnected"
    cmd = CostControlCommand.objects.get()
    assert cmd.command == "disconnect"
    assert cmd.state == "requested" and "no meter" in cmd.error  # the test customer has no meter
    services.take_payment(
        account=acc, amount="100.00", channel="online", at=at(start + timedelta(days=12), 10), actor=None
    )
    pp.refresh_from_db()
    assert pp.state == PrepaidAccount.State.NORMAL
    rc = CostControlCommand.objects.get(command="reconnect")
    assert rc.due_by - rc.requested_at == timedelta(hours=24)
    templates = list(Notice.objects.order_by("id").values_list("template", flat=True))
    assert templates == ["prepaid.alarm1", "prepaid.alarm2", "prepaid.negative", "prepaid.reconnect"]


def test_card_vend_sequence_unique(utility):
    from mmis.common.errors import InvalidInput

    acc = utility.customers["a"].accounts.get()
    user = utility.users["counter_a"]
    s = services.open_session(cashier=user, at=at(date(2026, 5, 1)))
    v = collection.vend_card(
        account=acc,
        amount="50.00",
        card_no="IC001",
        sequence=1,
        at=at(date(2026, 5, 1)),
        actor=user,
        session=s,
    )
    assert v.amount == D("50.00")
    try:
        collection.vend_card(
            account=acc,
            amount="50.00",
            card_no="IC001",
            sequence=1,
            at=at(date(2026, 5, 1)),
            actor=user,
            session=s,
        )
        raise AssertionError("a vend sequence was written twice")
    except InvalidInput:
        pass


def _plan_and_pay(utility, *, during_plan: bool):
    from mmis.accounts.models import LedgerEntry, Policy

    Policy.objects.update_or_create(org=utility.province, defaults={"late_fee_during_plan": during_plan})
    services.clear_policy_cache()
    acc = _bill_on_instalment(utility)
    services.take_payment(
        account=acc,
        amount="100.00",
        channel="online",
        at=at(date(2026, 1, 21)),
        actor=None,
        channel_txn_id="I1",
    )
    return list(LedgerEntry.objects.filter(account=acc, kind="late_fee").values_list("amount", flat=True))


def test_instalment_suspends_the_late_fee_by_default(utility):
    assert _plan_and_pay(utility, during_plan=False) == []


def test_policy_may_charge_the_late_fee_during_a_plan(utility):
    # 20 days overdue, residential 1 ‰ a day on the paid portion: the org's policy decides
    fees = _plan_and_pay(utility, during_plan=True)
    assert len(fees) == 1 and fees[0] > 0


def test_a_deferral_cannot_end_in_the_past(utility):
    import pytest

    acc = utility.customers["a"].accounts.get()
    with pytest.raises(InvalidInput) as exc:
        services.request_approval(
            kind="deferral",
            account=acc,
            actor=utility.users["counter_a"],
            at=at(date(2026, 3, 2)),
            reason="缓缴",
            valid_until=date(2026, 3, 1),
        )
    assert [(e.path, e.message) for e in exc.value.errors] == [("valid_until", "lies in the past")]
