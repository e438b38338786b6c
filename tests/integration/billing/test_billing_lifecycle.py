"""The bill lifecycle as an explicit state machine (Bill.LIFECYCLE): a run writes drafts, the audit
stage makes each flagged or passed, an auditor approves, release issues. A run may do the audit
stage with the calculation (the default) or write drafts and audit them later; both end with the
same bills, flags and risks. The audit stage runs again after the audit rules change, on the bills
not approved yet."""

from __future__ import annotations

from datetime import date

import pytest
from billing_support import snapshot
from test_billing_run import AT, MARCH, _bill, world  # noqa: F401 (world is a fixture)

from mmis.billing import services
from mmis.billing.models import AuditFlag, AuditRule, Bill, BillingRun, RunPartition
from mmis.common.errors import InvalidInput
from mmis.common.periods import Period


def _run(world, *, inline: bool) -> BillingRun:  # noqa: F811
    run = services.plan_run(
        org=world["utility"].province, month=MARCH, actor=None, at=AT, audit_inline=inline
    )
    return services.run_in_process(run)


def test_the_lifecycle_table():
    allows = Bill.allows
    assert allows("audit", "draft", "flagged") and allows("audit", "draft", "passed")
    assert allows("audit", "passed", "flagged")  # audited again after a rule changed
    assert not allows("audit", "audited", "passed") and not allows("audit", "draft", "audited")
    assert allows("approve", "flagged", "audited") and allows("approve", "passed", "audited")
    assert not allows("approve", "draft", "audited")  # the audit stage comes first
    assert allows("release", "audited", "issued") and not allows("release", "passed", "issued")
    assert allows("correct", "audited", "flagged") and not allows("correct", "issued", "flagged")
    assert not any(
        allows(e, s, t)
        for e in Bill.LIFECYCLE
        for s in Bill.FINAL
        for t in Bill.State.values
        if e != "settle"
    )
    assert set(Bill.sources("return")) == {"draft", "flagged", "passed", "audited"}


def test_drafts_then_the_audit_stage_equal_the_audit_with_the_calculation(world):  # noqa: F811
    inline = snapshot(_run(world, inline=True))
    run = _run(world, inline=False)
    assert run.state == BillingRun.State.DRAFTED
    assert set(Bill.objects.filter(run=run).values_list("state", flat=True)) == {"draft"}
    assert set(Bill.objects.filter(run=run).values_list("risk", flat=True)) == {0}
    assert AuditFlag.objects.filter(bill__run=run).count() == 0 and run.flagged == 0
    assert set(run.partitions.values_list("audited_at", flat=True)) == {None}
    # a draft is not for an auditor yet
    with pytest.raises(InvalidInput):
        services.approve_bills(bill_ids=[_bill(world, "r450").pk], actor=world["auditor"], at=AT)
    assert services.approve_clean(run=run, actor=world["auditor"], at=AT) == 0

    assert services.audit_run(run=run, actor=world["auditor"], at=AT) == 7
    run.refresh_from_db()
    assert run.state == BillingRun.State.CALCULATED
    assert None not in set(run.partitions.values_list("audited_at", flat=True))
    drafted_then_audited = snapshot(run)
    for pid, b in inline["bills"].items():
        assert drafted_then_audited["bills"][pid] == b, pid
    assert drafted_then_audited == inline
    assert {b["state"] for b in inline["bills"].values()} == {"flagged"}  # first bills: held
    from mmis.org.models import AuditLog

    assert AuditLog.objects.filter(action="billing.run.audit", target_id=str(run.pk)).exists()


def test_a_rule_change_is_applied_by_auditing_again(world):  # noqa: F811
    run = _run(world, inline=True)
    services.approve_bills(bill_ids=[_bill(world, "li").pk], actor=world["auditor"], at=AT)
    # the province stops holding first bills and estimated readings for an auditor
    for code in ("new_customer", "estimated"):
        AuditRule.objects.create(org=world["utility"].province, code=code, enabled=False)
    assert services.audit_run(run=run, actor=world["auditor"], at=AT) == 6  # not the approved one
    states = {name: _bill(world, name).state for name in ("r450", "r380", "r100", "r0", "est", "gen", "li")}
    assert states == {
        "r450": "passed",
        "r380": "passed",
        "r100": "passed",
        "r0": "flagged",  # zero bill
        "est": "passed",
        "gen": "passed",
        "li": "audited",  # approved before: the audit stage leaves it alone
    }
    assert _bill(world, "r0").flags == ["zero_bill"]
    assert list(AuditFlag.objects.filter(bill=_bill(world, "r450"))) == []
    assert _bill(world, "r450").risk == 0
    assert RunPartition.objects.get(run=run, key="B01").flagged == 1
    # the passed ones are approved in bulk, the flagged one waits for an auditor
    assert services.approve_clean(run=run, actor=world["auditor"], at=AT) == 5
    assert Bill.objects.filter(run=run, state="flagged").count() == 1


def test_an_auditor_correction_goes_back_to_an_auditor_and_stays_there(world):  # noqa: F811
    run = _run(world, inline=True)
    AuditRule.objects.create(org=world["utility"].province, code="new_customer", enabled=False)
    services.audit_run(run=run, actor=None, at=AT)
    assert _bill(world, "r450").state == "passed"
    services.recalculate_bill(
        bill=_bill(world, "r450"), usage={"kwh": "455"}, actor=world["auditor"], at=AT, reason="复核"
    )
    assert _bill(world, "r450").state == "flagged" and "manual_correction" in _bill(world, "r450").flags
    services.audit_run(run=run, actor=None, at=AT)  # a corrected bill stays with an auditor
    assert _bill(world, "r450").state == "flagged" and _bill(world, "r450").flags == ["manual_correction"]


def test_rerunning_a_drafted_partition_keeps_the_run_drafted(world):  # noqa: F811
    run = _run(world, inline=False)
    services.retry_partition(partition=run.partitions.get(key="B01"), actor=None, at=AT)
    run.refresh_from_db()
    assert run.state == BillingRun.State.DRAFTED
    services.audit_partition(partition=run.partitions.get(key="B01"), at=AT)
    run.refresh_from_db()
    assert run.state == BillingRun.State.DRAFTED  # B02 is still drafts
    services.audit_partition(partition=run.partitions.get(key="B02"), at=AT)
    run.refresh_from_db()
    assert run.state == BillingRun.State.CALCULATED
    assert Period(run.period_start, run.period_end) == MARCH and date(2026, 3, 1) == run.period_start
