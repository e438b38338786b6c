"""Step: a year of billing for the demo — one monthly run per month the readings step read (the
opening reading's month excluded), each calculated through the billing services with the real
readings and tariffs and audited (clean bills in bulk, flagged ones approved); the latest month
left in the audit queue with its flagged bills. Releasing posts the ledger charges set-based
(accounts.post_charges) but still queues and writes one notice per bill (~3 ms a bill on SQLite),
so the demo releases every month before the latest for the first station (a year of bills in its
customers' ledgers) and the last RELEASE_MONTHS months before the latest province-wide (notices
queued, a few corrections (退补) follow); the other audited bills wait for release ("发行" on the
run page).
Deterministic and idempotent (does nothing when billing runs exist)."""

from __future__ import annotations

import time as _t
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from mmis.cli.demo.context import DemoContext

TZ = ZoneInfo("Asia/Shanghai")
MONTHS = 12  # the billing months run (~2 s each at 5,000 customers on SQLite), the latest last
RELEASE_MONTHS = 1  # the months before the latest released province-wide; older ones for one station


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def billing_months(ctx: DemoContext) -> list[date]:
    info = ctx.data.get("readings")
    if not info:
        return []
    out, m = [], _next_month(info["first_month"])
    while m <= info["last_month"]:
        out.append(m)
        m = _next_month(m)
    return out[-MONTHS:]


def build_billing(ctx: DemoContext) -> None:
    from mmis.billing import services
    from mmis.billing.models import Bill, BillingRun
    from mmis.common.periods import Period

    months = billing_months(ctx)
    if not months or BillingRun.objects.exists():
        return
    auditor = ctx.users.get("auditor") or ctx.users.get("admin")
    manager = ctx.users.get("manager") or ctx.users.get("admin")
    report = ctx.report("billing")
    released = 0
    runs = []
    seconds: dict[str, float] = {}
    for k, m in enumerate(months):
        after = _next_month(m)
        at = datetime.combine(after.replace(day=2), time(9), tzinfo=TZ)
        run = services.plan_run(org=ctx.province, month=Period.month(m.year, m.month), actor=auditor, at=at)
        t0 = _t.perf_counter()
        run = services.run_in_process(run)
        runs.append(run)
        seconds["calculate"] = seconds.get("calculate", 0) + _t.perf_counter() - t0
        t0 = _t.perf_counter()
        approve_at = datetime.combine(after.replace(day=3), time(10), tzinfo=TZ)
        services.approve_clean(run=run, actor=auditor, at=approve_at)
        if k == len(months) - 1:
            break  # the latest month waits in the audit queue with its flagged bills
        flagged = list(Bill.objects.filter(run=run, state=Bill.State.FLAGGED).values_list("pk", flat=True))
        if flagged:
            services.approve_bills(bill_ids=flagged, actor=auditor, at=approve_at, note="演示: 审核通过")
        seconds["approve"] = seconds.get("approve", 0) + _t.perf_counter() - t0
        t0 = _t.perf_counter()
        release_at = datetime.combine(after.replace(day=4), time(9), tzinfo=TZ)
        if k >= len(months) - 1 - RELEASE_MONTHS:  # province-wide
            released += services.release_run(run=run, actor=auditor, at=release_at)
        elif ctx.stations:  # the first station: a whole year of bills in its customers' ledgers
            released += services.release_run(run=run, actor=auditor, at=release_at, org=ctx.stations[0].org)
        seconds["release"] = seconds.get("release", 0) + _t.perf_counter() - t0
    report.table_seconds.update(seconds)
    corrections = _corrections(runs[-2] if len(runs) > 1 else None, auditor, manager)
    latest = runs[-1]
    latest.refresh_from_db()
    report.rows.update(
        {
            "billing_runs": len(runs),
            "billing_bills": Bill.objects.count(),
            "billing_released": released,
            "billing_audit_queue": Bill.objects.filter(run=latest, state=Bill.State.FLAGGED).count(),
            "billing_exceptions": latest.exceptions,
            "billing_corrections": corrections,
        }
    )


def _corrections(run, requester, approver) -> int:
    """Three 退补 on the last released month: a debit approved, a credit approved, one pending."""
    if run is None:
        return 0
    from decimal import Decimal

    from mmis.billing import services
    from mmis.billing.models import Bill

    bills = list(
        Bill.objects.filter(run=run, state=Bill.State.ISSUED, tariff_code="RES-TIER", energy_kwh__gt=150)
        .order_by("pk")
        .only("pk")[:3]
    )
    at = datetime.combine(run.period_end.replace(day=20), time(10), tzinfo=TZ)
    n = 0
    for i, b in enumerate(bills):
        b = Bill.objects.get(pk=b.pk)
        delta = Decimal(40) if i != 1 else Decimal(-30)
        c = services.request_correction(
            bill=b,
            reason="reading_error",
            usage={"kwh": str(b.energy_kwh + delta)},
            actor=requester,
            at=at,
            note="演示: 抄表差错, 按实际示数重算",
        )
        n += 1
        if i < 2 and approver is not None and approver.pk != requester.pk:
            services.approve_correction(correction=c, actor=approver, at=at.replace(hour=15))
    return n
