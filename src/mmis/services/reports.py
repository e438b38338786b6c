"""Service-commitment compliance (业扩时限达标): per org and month, the work orders finished in
the month, how many within the commitment (utility-side time only), and those still open past it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

from django.db.models import Count, Q
from django.utils import timezone

from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.services.commitments import COMMITMENTS
from mmis.workflow.models import ProcessInstance


@dataclass
class ComplianceCell:
    finished: int = 0
    on_time: int = 0
    open_overdue: int = 0

    @property
    def late(self) -> int:
        return self.finished - self.on_time

    @property
    def rate(self) -> Decimal | None:
        if not self.finished:
            return None
        return (Decimal(self.on_time) * 100 / Decimal(self.finished)).quantize(Decimal("0.1"))


@dataclass
class ComplianceRow:
    org: Org
    total: ComplianceCell
    by_process: dict[str, ComplianceCell] = field(default_factory=dict)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    start = datetime.combine(date(year, month, 1), time(0), tzinfo=tz)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return start, datetime.combine(nxt, time(0), tzinfo=tz)


def compliance(
    user: User, *, year: int, month: int, root: Org | None = None, category: str = ""
) -> list[ComplianceRow]:
    """One row per child org of `root` (default the user's org), with a cell per process."""
    scope = DataScope.for_user(user)
    root = root or user.org or Org.objects.filter(depth=1).first()
    children = list(
        Org.objects.filter(path__startswith=root.path, depth=root.depth + 1).order_by("code")
    ) or [root]
    start, end = month_bounds(year, month)
    codes = [c for c, v in COMMITMENTS.items() if not category or v.category == category]
    base = scope.filter(ProcessInstance.objects.filter(definition__code__in=codes), "org")
    now = timezone.now()
    rows = []
    for child in children:
        if (
            not scope.everything
            and not scope.contains_org(child)
            and not any(p.startswith(child.path) for p in scope.prefixes)
        ):
            continue
        mine = base.filter(org__path__startswith=child.path)
        finished = (
            mine.filter(state=ProcessInstance.State.COMPLETED, ended_at__gte=start, ended_at__lt=end)
            .values("definition__code")
            .annotate(n=Count("id"), ok=Count("id", filter=Q(on_time=True)))
        )
        overdue = (
            mine.filter(state=ProcessInstance.State.RUNNING, due_at__lt=min(end, now), started_at__lt=end)
            .values("definition__code")
            .annotate(n=Count("id"))
        )
        row = ComplianceRow(org=child, total=ComplianceCell())
        for r in finished:
            cell = row.by_process.setdefault(r["definition__code"], ComplianceCell())
            cell.finished += r["n"]
            cell.on_time += r["ok"]
            row.total.finished += r["n"]
            row.total.on_time += r["ok"]
        for r in overdue:
            cell = row.by_process.setdefault(r["definition__code"], ComplianceCell())
            cell.open_overdue += r["n"]
            row.total.open_overdue += r["n"]
        rows.append(row)
    return rows
