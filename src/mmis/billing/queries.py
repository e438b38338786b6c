"""Reads of billing, always through the caller's data scope (outside it: NotFound)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum

from mmis.billing.models import AuditRule, Bill, BillingRun, Correction, RunException
from mmis.common.errors import NotFound
from mmis.common.money import round_fen
from mmis.org.models import Org, User
from mmis.org.scope import DataScope

READ_ROLES = ("billing_auditor", "manager", "administrator")
WRITE_ROLES = ("billing_auditor", "administrator")


def can_read(user: User) -> bool:
    return user.is_superuser or user.has_role(*READ_ROLES)


def can_write(user: User) -> bool:
    return user.is_superuser or user.has_role(*WRITE_ROLES)


def runs(user: User) -> QuerySet[BillingRun]:
    """Runs of orgs inside the user's scope, and runs of the orgs above it (a province-wide run
    covers a county auditor's books; its bills stay filtered by scope)."""
    scope = DataScope.for_user(user)
    qs = BillingRun.objects.select_related("org")
    if scope.everything:
        return qs
    q = Q(pk__in=[])
    for p in scope.prefixes:
        ancestors = [p[:n] for n in range(Org.steplen, len(p), Org.steplen)]
        q |= Q(org__path__startswith=p) | Q(org__path__in=ancestors)
    return qs.filter(q)


def action_org(user: User, run: BillingRun) -> Org | None:
    """None when the user's scope covers the run's org; else the user's own org, to which a
    bulk approval or release of that run is limited."""
    return None if DataScope.for_user(user).contains_org(run.org) else user.org


def scope_run_figures(user: User, run: BillingRun) -> BillingRun:
    """A run of an org above the user's scope (a province-wide run seen by a county auditor):
    its bill, exception, pending-audit and amount figures become those of the user's own part,
    on this object only, so no one reads totals outside their subtree."""
    if action_org(user, run) is None:
        return run
    mine = bills(user).filter(run=run)
    agg = mine.aggregate(
        n=Count("id"), flagged=Count("id", filter=Q(state=Bill.State.FLAGGED)), amount=Sum("amount")
    )
    run.bills, run.flagged = agg["n"], agg["flagged"]
    run.amount = round_fen(agg["amount"] or Decimal(0))
    run.exceptions = (
        DataScope.for_user(user).filter(RunException.objects.filter(run=run), "point__org").count()
    )
    return run


def get_run(user: User, pk: int | str) -> BillingRun:
    try:
        return runs(user).get(pk=pk)
    except (BillingRun.DoesNotExist, ValueError):
        raise NotFound(f"no billing run {pk}") from None


def bills(user: User) -> QuerySet[Bill]:
    return DataScope.for_user(user).filter(Bill.objects.select_related("customer", "point", "org"), "org")


def get_bill(user: User, pk: int | str) -> Bill:
    try:
        return bills(user).select_related("account", "run", "partition").get(pk=pk)
    except (Bill.DoesNotExist, ValueError):
        raise NotFound(f"no bill {pk}") from None


def audit_queue(user: User, *, run_id: int | None = None) -> QuerySet[Bill]:
    qs = bills(user).filter(state=Bill.State.FLAGGED)
    if run_id:
        qs = qs.filter(run_id=run_id)
    return qs.order_by("-risk", "-amount", "pk")


LIFECYCLE_STEPS = (  # the run page's picture of the bill lifecycle (Bill.LIFECYCLE), in order
    ("draft", "audit"),
    ("flagged", "approve"),
    ("passed", "approve"),
    ("audited", "release"),
    ("issued", None),
    ("returned", None),
)


def lifecycle(run: BillingRun) -> list[dict[str, Any]]:
    """The run's bills per lifecycle state (one grouped query), in lifecycle order, with the
    event that moves each state on."""
    from django.db.models import Count

    counts = dict(Bill.objects.filter(run=run).values_list("state").annotate(n=Count("id")))
    labels = dict(Bill.State.choices)
    return [
        {"state": state, "label": labels[state], "count": counts.get(state, 0), "next": event}
        for state, event in LIFECYCLE_STEPS
    ] + (
        [{"state": "settled", "label": labels["settled"], "count": counts["settled"], "next": None}]
        if counts.get("settled")
        else []
    )


def audit_rule_orgs(user: User) -> QuerySet[Org]:
    """The orgs whose audit rules the user sees and sets: the user's own subtree."""
    return DataScope.for_user(user).orgs().exclude(level=Org.Level.SERVICE_HALL).order_by("path")


def audit_rule_settings(org: Org, on: date) -> list[dict[str, Any]]:
    """Each audit rule as it applies at `org` on `on`: on or off, its parameters (the defaults with
    the nearest setting up the tree on top), where that setting comes from, and the org's own."""
    from mmis.billing import rules

    paths = org.ancestor_paths()
    depth = {p: i for i, p in enumerate(paths)}
    best: dict[str, AuditRule] = {}
    for r in AuditRule.objects.filter(org__path__in=paths, effective_from__lte=on).select_related("org"):
        cur = best.get(r.code)
        key = (-depth[r.org.path], r.effective_from)
        if cur is None or key > (-depth[cur.org.path], cur.effective_from):
            best[r.code] = r
    upcoming = {
        r.code: r for r in AuditRule.objects.filter(org=org, effective_from__gt=on).order_by("effective_from")
    }
    out = []
    for code, params in rules.RULE_PARAMS.items():
        won = best.get(code)
        effective = dict(rules.DEFAULT_AUDIT_RULES.get(code, {}))
        if won is not None:
            effective.update(won.params or {})
        out.append(
            {
                "code": code,
                "params": [(name, kind, effective.get(name, "")) for name, kind in params],
                "enabled": won.enabled if won is not None else True,
                "source": won.org if won is not None else None,
                "since": won.effective_from if won is not None else None,
                "own": won if won is not None and won.org_id == org.pk else None,
                "upcoming": upcoming.get(code),
                "weight": rules.RULE_WEIGHTS.get(code, 10),
            }
        )
    return out


def exceptions(run: BillingRun) -> QuerySet[RunException]:
    return run.exception_set.select_related("point", "point__customer", "partition")


def corrections(user: User) -> QuerySet[Correction]:
    return DataScope.for_user(user).filter(
        Correction.objects.select_related("bill", "bill__customer", "requested_by", "decided_by"), "org"
    )


def get_correction(user: User, pk: int | str) -> Correction:
    try:
        return corrections(user).get(pk=pk)
    except (Correction.DoesNotExist, ValueError):
        raise NotFound(f"no correction {pk}") from None


def usage_history(bill: Bill, months: int = 12) -> list[dict[str, Any]]:
    """The point's last `months` bills up to this one (for the chart on the bill)."""
    rows = (
        Bill.objects.filter(point_id=bill.point_id, period_start__lte=bill.period_start)
        .exclude(state=Bill.State.RETURNED)
        .order_by("-period_start")
        .values("period_start", "energy_kwh", "amount")[:months]
    )
    return [
        {"month": f"{r['period_start']:%Y-%m}", "kwh": r["energy_kwh"], "amount": r["amount"]}
        for r in reversed(list(rows))
    ]


LINE_LABELS = {
    "energy.flat": "电度电费",
    "energy.tier1": "第一档电费",
    "energy.tier2": "第二档电费",
    "energy.tier3": "第三档电费",
    "energy.sharp": "尖峰电费",
    "energy.peak": "高峰电费",
    "energy.valley": "低谷电费",
    "basic.capacity": "基本电费(容量)",
    "basic.demand": "基本电费(需量)",
    "basic.demand_excess": "基本电费(超需量)",
    "pf_adjustment": "功率因数调整电费",
    "fund.hydro_project": "国家重大水利工程建设基金",
    "fund.reservoir_resettlement": "大中型水库移民后期扶持资金",
    "fund.small_reservoir": "小型水库移民扶助基金",
    "fund.renewable": "可再生能源电价附加",
    "fund.rural_grid_loan": "农网还贷资金",
}


COMPONENT_LABELS = {
    "agency_purchase": "代理购电电费",
    "line_loss": "上网环节线损费用",
    "system_operation": "系统运行费用",
    "td": "输配电费",
}
PERIOD_LABELS = {"sharp": "尖峰", "peak": "高峰", "flat": "平段", "valley": "低谷"}


def line_label(code: str) -> str:
    if code in LINE_LABELS:
        return LINE_LABELS[code]
    if code.startswith("energy.tier") and code.endswith("_increment"):
        return f"第{code[11:-10]}档加价"
    if code.startswith("component."):
        name, _, period = code[10:].partition(".")
        label = COMPONENT_LABELS.get(name, name)
        return f"{label}({PERIOD_LABELS.get(period, period)})" if period else label
    if code.startswith("fund."):
        return f"基金 {code[5:]}"
    return code


def trace_steps(bill: Bill) -> list[dict[str, Any]]:
    """The bill explained: readings → energy → tariff version → lines → total."""
    t = bill.full_trace
    r = t.get("r", {})
    steps = [
        {
            "title": "抄表示数",
            "rows": [
                ("起码", r.get("start")),
                ("止码", r.get("end")),
                ("综合倍率", r.get("mult")),
                ("估抄", "是" if r.get("est") else "否"),
            ],
        },
        {
            "title": "电量",
            "rows": [
                ("抄见电量(kWh)", r.get("kwh")),
                ("分时电量", r.get("tou")),
                ("无功电量(kvarh)", r.get("kvarh")),
                ("最大需量(kW)", r.get("md")),
                ("变损电量(kWh)", t.get("loss")),
                ("计费电量(kWh)", bill.energy_kwh),
                ("功率因数", t.get("pfv")),
            ],
        },
    ]
    for i, s in enumerate(t.get("seg", [])):
        steps.append(
            {
                "title": f"电价版本 {s.get('vl') or s.get('v')}"
                + (f"(第{i + 1}段)" if len(t["seg"]) > 1 else ""),
                "rows": [
                    ("计费期", f"{s['start']} 至 {s['end']}"),
                    ("电量(kWh)", s["kwh"]),
                    ("分时电量", s.get("tou")),
                    ("年累计/段前电量", s.get("ytd")),
                ],
            }
        )
    return steps


def total_of(lines) -> Decimal:
    return sum((ln.amount for ln in lines), Decimal("0.00"))
