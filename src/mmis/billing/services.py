"""Billing use cases: plan and run a billing month, audit, release, corrections (退补).

A run is split into partitions (one per reading book); `process_partition` is the one code path
for the in-process mode and for Celery workers. It reads its inputs set-based, rates them in one
vectorised pass per tariff group, audits them and writes in ONE transaction: delete what it (or an
earlier run) left for its points this month, except issued bills, then insert. So a rerun replaces
exactly its own output, a killed attempt leaves nothing behind, and an issued bill is never touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection, models, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from mmis.billing import bulk, calc, rules, writer
from mmis.billing.inputs import PointReading, Source, TariffVersion, source
from mmis.billing.models import (
    AuditRule,
    Bill,
    BillingRun,
    BillLine,
    Correction,
    RunPartition,
    RunTariff,
)
from mmis.common.errors import FieldError, InvalidInput
from mmis.common.periods import Period
from mmis.customers.models import MeteringPoint
from mmis.org import audit
from mmis.org.models import Org, User

log = logging.getLogger(__name__)

PIPELINE = True  # in-process on PostgreSQL: calculate the next partition while writing this one
PARTITION_MAX_POINTS = 5000  # a reading book larger than this is split
PARTITION_TARGET_POINTS = 3000  # small books of one org are packed together up to this size
PAYMENT_TERM_DEFAULT_DAYS = {"residential": 20, "agricultural": 20, "general_ci": 15, "large_industry": 10}


class UnableToPlanRun(InvalidInput):
    pass


class UnableToAuditBill(InvalidInput):
    pass


class UnableToReleaseBill(InvalidInput):
    pass


class UnableToCorrectBill(InvalidInput):
    pass


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- planning -------------------------------------------------------------------------------------
def plan_run(
    *,
    org: Org,
    month: Period,
    actor: User | None,
    at: datetime,
    book_codes: list[str] | None = None,
    mode: str = BillingRun.Mode.IN_PROCESS,
    audit_inline: bool = True,
) -> BillingRun:
    """A run for the active metering points under `org` (optionally only those books), split into
    partitions of one reading book each (large books in chunks). `audit_inline=False`: the
    partitions write drafts and the audit stage runs afterwards (`audit_run`)."""
    errors = []
    if not month.is_whole_month():
        errors.append(FieldError("month", "a billing run covers one calendar month"))
    points = MeteringPoint.objects.filter(org__path__startswith=org.path, status=MeteringPoint.Status.ACTIVE)
    rows = list(points.values_list("id", "org_id", "reading_book_code").order_by("id"))
    books = source().book_of_points(point_ids=None, org_path=org.path)
    keyed: dict[str, list[int]] = defaultdict(list)
    key_org: dict[str, int] = {}
    wanted = set(book_codes or [])
    for pid, org_id, own_book in rows:
        book = books.get(pid) or own_book
        if wanted and book not in wanted:
            continue
        key = book or f"org:{org_id}"
        keyed[key].append(pid)
        key_org.setdefault(key, org_id)
    if wanted and not keyed:
        errors.append(FieldError("book_codes", "no active metering point in these reading books"))
    elif not keyed:
        errors.append(FieldError("org", f"{org.name} has no active metering point"))
    if errors:
        raise UnableToPlanRun(errors)
    with transaction.atomic():
        run = BillingRun.objects.create(
            org=org,
            period_start=month.start,
            period_end=month.end,
            book_codes=sorted(wanted),
            mode=mode,
            audit_inline=audit_inline,
            created_by=actor if actor is not None and actor.pk else None,
            created_at=at,
            points_total=sum(len(v) for v in keyed.values()),
        )
        parts = [
            RunPartition(run=run, key=key, org_id=org_id, books=books, point_ids=ids, points=len(ids))
            for key, org_id, books, ids in pack_partitions(keyed, key_org)
        ]
        RunPartition.objects.bulk_create(parts, batch_size=1000)
        _CACHE["run"] = None
        run.partitions_total = len(parts)
        run.save(update_fields=["partitions_total"])
        audit.record(
            actor=actor,
            action="billing.run.plan",
            target=run,
            after={
                "month": run.month_label,
                "books": sorted(wanted),
                "points": run.points_total,
                "audit_inline": audit_inline,
            },
            at=at,
        )
    return run


def pack_partitions(
    keyed: dict[str, list[int]], key_org: dict[str, int]
) -> list[tuple[str, int, list[str], list[int]]]:
    """(key, org id, book codes, point ids) per partition: the books of one org in code order,
    packed up to PARTITION_TARGET_POINTS points (a partition's fixed cost is paid once for many
    small books); a book above PARTITION_MAX_POINTS is split into chunks of its own."""
    out: list[tuple[str, int, list[str], list[int]]] = []
    by_org: dict[int, list[str]] = defaultdict(list)
    for key in sorted(keyed):
        by_org[key_org[key]].append(key)

    def flush(org_id: int, books: list[str], ids: list[int]) -> None:
        if books:
            key = books[0] if len(books) == 1 else f"{books[0]} +{len(books) - 1}"
            out.append((key[:40], org_id, list(books), list(ids)))

    for org_id in sorted(by_org, key=lambda o: by_org[o][0]):
        books: list[str] = []
        ids: list[int] = []
        for key in by_org[org_id]:
            pts = keyed[key]
            if len(pts) > PARTITION_MAX_POINTS:
                for n, i in enumerate(range(0, len(pts), PARTITION_MAX_POINTS)):
                    chunk = pts[i : i + PARTITION_MAX_POINTS]
                    out.append((key if n == 0 else f"{key}#{n + 1}", org_id, [key], chunk))
                continue
            if ids and len(ids) + len(pts) > PARTITION_TARGET_POINTS:
                flush(org_id, books, ids)
                books, ids = [], []
            books.append(key)
            ids.extend(pts)
        flush(org_id, books, ids)
    return out


def pending_partitions(run: BillingRun) -> list[int]:
    """Partitions not done yet (pending, failed, or left running by a worker that died)."""
    return list(run.partitions.exclude(state=RunPartition.State.DONE).values_list("pk", flat=True))


def run_in_process(run: BillingRun, *, progress: Callable[[RunPartition], None] | None = None) -> BillingRun:
    """Every partition not done yet, here, one after the other (also how a killed run resumes)."""
    _CACHE["run"] = None
    mark_started(run)
    ids = pending_partitions(run)
    if PIPELINE and len(ids) > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block:
        _run_pipelined(ids, progress)
    else:
        for pid in ids:
            p = process_partition(pid)
            if progress:
                progress(p)
    run.refresh_from_db()
    return run


def mark_started(run: BillingRun) -> None:
    BillingRun.objects.filter(pk=run.pk, state=BillingRun.State.PLANNED).update(
        state=BillingRun.State.RUNNING, started_at=timezone.now()
    )


def dispatch(run: BillingRun) -> int:
    """Queue the partitions not done yet as Celery tasks (eager, in-process, without a broker)."""
    from mmis.billing.tasks import run_partition

    ids = pending_partitions(run)
    mark_started(run)
    for pid in ids:
        run_partition.delay(pid)
    return len(ids)


# --- one partition --------------------------------------------------------------------------------
@dataclass
class _Inputs:
    points: list[calc.PointFile]
    readings: dict[int, PointReading]
    subs: dict[int, list[int]]
    issued: set[int]
    histories: dict[int, calc.History]


def _month_before(p: Period, months: int) -> Period:
    y, m = p.start.year, p.start.month - months
    while m <= 0:
        y, m = y - 1, m + 12
    return Period.month(y, m)


def _load(point_ids: list[int], month: Period) -> _Inputs:
    cols = (
        "id",
        "org_id",
        "customer_id",
        "account_id",
        "usage_category",
        "tariff_code",
        "multiplier",
        "pf_standard",
        "basic_charge_mode",
        "contract_capacity_kva",
        "contract_demand_kw",
        "tier_persons",
        "role",
        "parent_id",
        "energised_on",
        "position",
    )
    points = [
        calc.PointFile(*row)
        for row in MeteringPoint.objects.filter(pk__in=point_ids).order_by("pk").values_list(*cols)
    ]
    subs: dict[int, list[int]] = defaultdict(list)
    for sid, parent in MeteringPoint.objects.filter(
        parent_id__in=point_ids, role=MeteringPoint.Role.SUB, status=MeteringPoint.Status.ACTIVE
    ).values_list("id", "parent_id"):
        subs[parent].append(sid)
    wanted = sorted(set(point_ids) | {s for v in subs.values() for s in v})
    readings = source().billing_inputs(point_ids=wanted, period=month)
    in_month = Q(period_start__gte=month.start, period_start__lt=month.end)
    issued = set(
        Bill.objects.filter(
            in_month, point_id__in=point_ids, state__in=[Bill.State.ISSUED, Bill.State.SETTLED]
        ).values_list("point_id", flat=True)
    )
    prev, last_year = _month_before(month, 1), _month_before(month, 12)
    hist: dict[int, dict[str, Any]] = defaultdict(dict)
    live = Bill.objects.filter(point_id__in=point_ids).exclude(state=Bill.State.RETURNED)
    for pid, start, amount, energy in live.filter(
        Q(period_start__gte=prev.start, period_start__lt=prev.end)
        | Q(period_start__gte=last_year.start, period_start__lt=last_year.end)
    ).values_list("point_id", "period_start", "amount", "energy_kwh"):
        if start >= prev.start:
            hist[pid]["last_amount_fen"] = int(amount * 100)
            hist[pid]["last_energy_e4"] = int(energy * 10000)
        else:
            hist[pid]["last_year_amount_fen"] = int(amount * 100)
    earlier = set(live.filter(period_start__lt=month.start).values_list("point_id", flat=True).distinct())
    ytd: dict[int, int] = {}
    tier_year = date(month.start.year, 1, 1)
    if month.start > tier_year:
        for pid, total in (
            live.filter(period_start__gte=tier_year, period_start__lt=month.start)
            .values("point_id")
            .annotate(s=Sum("energy_kwh"))
            .values_list("point_id", "s")
        ):
            ytd[pid] = int((total or 0) * 10000)
    histories = {
        p.id: calc.History(has_earlier_bill=p.id in earlier, ytd_e4=ytd.get(p.id, 0), **hist.get(p.id, {}))
        for p in points
    }
    return _Inputs(points, readings, subs, issued, histories)


class _Tariffs:
    """Tariff versions in force per (org, day), cached; the spans of a code over a period."""

    def __init__(self, month: Period | None = None) -> None:
        self.month = month
        self.by_day: dict[tuple[int, date], dict[str, TariffVersion]] = {}
        self.spans: dict[tuple[int, str, Period], list | None] = {}
        self.orgs: dict[int, Org] = {}
        self.used: dict[int, TariffVersion] = {}

    def in_force(self, org_id: int, on: date) -> dict[str, TariffVersion]:
        key = (org_id, on)
        if key not in self.by_day:
            org = self.orgs.get(org_id) or Org.objects.get(pk=org_id)
            self.orgs[org_id] = org
            self.by_day[key] = source().tariffs_in_force(org=org, on=on)
        return self.by_day[key]

    def versions_at(self, org_id: int, code: str, period: Period) -> list | None:
        key = (org_id, code, period)
        if key in self.spans:
            return self.spans[key]
        m = self.month
        if m is not None and m.start < period.start and period.end <= m.end:
            # a period starting inside the run's month (a point energised on the 10th): the same
            # version on the month's first and last day is in force on every day between, so the
            # catalog is read twice per org, not once per day
            first = self.in_force(org_id, m.start).get(code)
            last = self.in_force(org_id, m.end - timedelta(days=1)).get(code)
            if first is not None and last is not None and first.version_id == last.version_id:
                self.used[first.version_id] = first
                self.spans[key] = [(period, first)]
                return self.spans[key]
        spans: list[tuple[Period, TariffVersion]] | None = []
        cur = period.start
        while cur < period.end:
            v = self.in_force(org_id, cur).get(code)
            if v is None:
                spans = None
                break
            end = min(v.effective_to or period.end, period.end)
            if end <= cur:
                end = period.end
            spans.append((Period(cur, end), v))
            self.used[v.version_id] = v
            cur = end
        self.spans[key] = spans
        return spans


_CACHE: dict[str, Any] = {"run": None}


def _run_cache(run_id: int, month: Period | None = None) -> tuple[_Tariffs, dict[int, dict]]:
    """Tariffs in force and audit rules, cached for the partitions of one run that this process
    calculates (a run prices with the catalog as it was when it started)."""
    key = (run_id, id(source()))
    if _CACHE["run"] != key:
        _CACHE.update(run=key, tariffs=_Tariffs(month), rules={})
    return _CACHE["tariffs"], _CACHE["rules"]


def audit_rules_for(org: Org, on: date) -> dict:
    """Rule settings in force at `org` on `on`: per code, the nearest org up the tree wins."""
    paths = org.ancestor_paths()
    depth_of = {p: i for i, p in enumerate(paths)}  # 0 = the org itself
    best: dict[str, tuple[int, date, AuditRule]] = {}
    for r in AuditRule.objects.filter(org__path__in=paths, effective_from__lte=on).select_related("org"):
        d = depth_of[r.org.path]
        cur = best.get(r.code)
        if cur is None or d < cur[0] or (d == cur[0] and r.effective_from > cur[1]):
            best[r.code] = (d, r.effective_from, r)
    overrides = {code: {"enabled": r.enabled, "params": r.params} for code, (_, _, r) in best.items()}
    return overrides


# --- audit rule settings per org (审核规则设置) ---------------------------------------------------
class UnableToSetAuditRules(InvalidInput):
    pass


def _setting_message(e: rules.SettingError) -> str:
    from django.utils.translation import gettext as _

    lo, hi, places = rules.PARAM_LIMITS.get(e.kind, (0, 0, 0))
    return {
        "unknown": _("未知的审核规则"),
        "required": _("启用该规则时必须填写"),
        "number": _("请输入数字"),
        "decimals": _("最多 %(places)s 位小数") % {"places": places},
        "range": _("应在 %(lo)s 至 %(hi)s 之间") % {"lo": lo, "hi": hi},
    }[e.problem]


def set_audit_rules(
    *,
    org: Org,
    settings: dict[str, dict | None],
    effective_from: date | None,
    actor: User | None,
    at: datetime,
) -> list[str]:
    """An org's own audit rule settings from `effective_from` (DOMAIN §4.2; below it, each org
    inherits the nearest setting up the tree). `settings`: rule code → {"enabled", "params"}, or
    None to drop the org's own setting of that rule and inherit again. All checked first, then
    written in one transaction, each change audited with its before and after. Returns the codes
    that changed. Bills already audited keep their flags until the audit stage runs again."""
    from django.utils.translation import gettext as _

    errors: list[FieldError] = []
    clean: dict[str, dict | None] = {}
    for code, setting in settings.items():
        if setting is None:
            clean[code] = None
            continue
        enabled = bool(setting.get("enabled", True))
        params, problems = rules.clean_rule_setting(code, enabled, setting.get("params") or {})
        errors += [FieldError(e.path, _setting_message(e)) for e in problems]
        clean[code] = {"enabled": enabled, "params": params}
    if effective_from is None:
        errors.append(FieldError("effective_from", _("请填写生效日期")))
    elif effective_from < date(2000, 1, 1):
        errors.append(FieldError("effective_from", _("生效日期不能早于 2000-01-01")))
    if errors:
        raise UnableToSetAuditRules(errors)
    assert effective_from is not None
    changed: list[str] = []
    with transaction.atomic():
        for code, setting in clean.items():
            own = list(
                AuditRule.objects.select_for_update().filter(org=org, code=code).order_by("effective_from")
            )
            if setting is None:
                if own:
                    before = [
                        {
                            "effective_from": r.effective_from.isoformat(),
                            "enabled": r.enabled,
                            "params": r.params,
                        }
                        for r in own
                    ]
                    AuditRule.objects.filter(pk__in=[r.pk for r in own]).delete()
                    audit.record(
                        actor=actor,
                        action="billing.audit_rule.inherit",
                        target=org,
                        org=org,
                        before={"code": code, "settings": before},
                        after={"code": code, "inherit": True},
                        at=at,
                    )
                    changed.append(code)
                continue
            row = next((r for r in own if r.effective_from == effective_from), None)
            before = None if row is None else {"enabled": row.enabled, "params": row.params}
            if before == setting:
                continue
            if row is None:
                row = AuditRule.objects.create(org=org, code=code, effective_from=effective_from, **setting)
            else:
                row.enabled, row.params = setting["enabled"], setting["params"]
                row.save(update_fields=["enabled", "params"])
            audit.record(
                actor=actor,
                action="billing.audit_rule.set",
                target=row,
                before=before,
                after={"code": code, "effective_from": effective_from.isoformat(), **setting},
                at=at,
            )
            changed.append(code)
    _CACHE["run"] = None  # runs calculated from now on read the new settings
    return changed


def process_partition(partition_id: int, *, worker: str | None = None) -> RunPartition:
    """Calculate one partition in ONE transaction (idempotent: rerunning replaces its own bills;
    a worker killed half-way leaves nothing, and the partition stays to be done)."""
    worker = (worker or worker_name())[:100]
    t0 = time.perf_counter()
    started = timezone.now()
    try:
        with transaction.atomic():
            p = RunPartition.objects.select_for_update().select_related("run").get(pk=partition_id)
            if p.state == RunPartition.State.DONE:  # another worker finished it meanwhile
                return p
            _apply(p, _prepare(p), worker=worker, started=started, t0=t0)
        return p
    except Exception as exc:
        return _failed(partition_id, exc, worker=worker, started=started)


@dataclass
class _Prepared:
    """A calculated partition, ready to write: its rows, counters and the tariff versions used."""

    rows: tuple[list, list, list, list]
    versions: dict[int, TariffVersion]
    counters: dict[str, Any]


def _prepare(p: RunPartition) -> _Prepared:
    """Calculate the partition and format its rows (reads only; bill ids from the sequence)."""
    result = _calculate(p)
    return _Prepared(_rows(p, result), result.versions, result.counters)


def _apply(p: RunPartition, prepared: _Prepared, *, worker: str, started: datetime, t0: float) -> None:
    """Inside the partition's transaction, with its row locked: replace its drafts by the rows."""
    if connection.vendor == "postgresql":
        # drafts and the partition's "done" commit together or not at all: if the server stopped
        # before this commit reached the disk, the partition is simply pending again and a resume
        # recalculates it, so the commit need not wait for the WAL flush
        with connection.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit = off")
    _write(p, prepared)
    p.state = RunPartition.State.DONE
    p.attempt += 1
    p.worker, p.started_at, p.error = worker, started, ""
    p.finished_at = timezone.now()
    p.seconds = time.perf_counter() - t0
    for k, v in prepared.counters.items():
        setattr(p, k, v)
    if p.run.audit_inline:
        p.audited_at = p.finished_at
    else:
        p.audited_at, p.flagged = None, 0
    p.save()
    refresh_run(p.run_id)


def _failed(partition_id: int, exc: Exception, *, worker: str, started: datetime) -> RunPartition:
    log.error("billing partition %s failed", partition_id, exc_info=exc)
    with transaction.atomic():
        RunPartition.objects.filter(pk=partition_id).update(
            state=RunPartition.State.FAILED,
            attempt=models.F("attempt") + 1,
            worker=worker,
            started_at=started,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        p = RunPartition.objects.get(pk=partition_id)
        refresh_run(p.run_id)
    return p


def _run_pipelined(ids: list[int], progress: Callable[[RunPartition], None] | None) -> None:
    """The in-process run on PostgreSQL as a two-stage pipeline: a thread calculates the next
    partition (its reads, NumPy and the COPY text) while this one writes the previous (delete, COPY,
    commit), so the database's work and Python's overlap. Each write is still ONE transaction with
    the partition row locked; a partition another worker finished meanwhile is not written again."""
    import queue
    import threading

    from django.db import connections

    worker = worker_name()[:100]
    ready: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def calculate() -> None:
        try:
            for pid in ids:
                if stop.is_set():
                    break
                t0, started = time.perf_counter(), timezone.now()
                try:
                    p = RunPartition.objects.select_related("run").get(pk=pid)
                    item = (pid, None if p.state == RunPartition.State.DONE else _prepare(p), None)
                except Exception as exc:
                    item = (pid, None, exc)
                ready.put((*item, t0, started))
        finally:
            ready.put(None)
            connections.close_all()

    thread = threading.Thread(target=calculate, name="billing-calculate", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            pid, prepared, error, t0, started = item
            if error is not None:
                p = _failed(pid, error, worker=worker, started=started)
            elif prepared is None:
                p = RunPartition.objects.get(pk=pid)
            else:
                try:
                    with transaction.atomic():
                        p = RunPartition.objects.select_for_update().select_related("run").get(pk=pid)
                        if p.state != RunPartition.State.DONE:
                            _apply(p, prepared, worker=worker, started=started, t0=t0)
                except Exception as exc:
                    p = _failed(pid, exc, worker=worker, started=started)
            if progress:
                progress(p)
    finally:
        stop.set()
        while thread.is_alive():  # let the calculating thread finish its partition and stop
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        thread.join()


@dataclass
class _Result:
    bills: list[calc.BillResult]  # the per-point path's bills
    set_aside: list[calc.SetAside]
    versions: dict[int, TariffVersion]
    counters: dict[str, Any]
    block: bulk.Block | None = None  # the set-based path's bills
    cols: bulk.Cols | None = None


SET_BASED = True  # False: every point through the per-point path (tests compare the two)


def _rule_set(org_id: int, month: Period, tariffs: _Tariffs, rule_cache: dict[int, dict]) -> dict:
    if org_id not in rule_cache:
        org = tariffs.orgs.get(org_id) or Org.objects.get(pk=org_id)
        tariffs.orgs[org_id] = org
        rule_cache[org_id] = rules.effective_rules(audit_rules_for(org, month.start))
    return rule_cache[org_id]


def _calculate(p: RunPartition) -> _Result:
    """The partition's inputs in one query, the usual points rated and audited set-based
    (`bulk`), the others (set aside, prorated, nested, …) point by point (`calc`)."""
    run = p.run
    month = run.period
    tariffs, rule_cache = _run_cache(run.pk, month)
    point_ids = list(p.point_ids)
    block = cols = None
    skipped = 0
    if SET_BASED:
        src = source()
        real = type(src).billing_inputs is Source.billing_inputs
        cols = bulk.load(point_ids, month, with_readings=real)
        if real:
            bulk.compute_readings(cols)
        else:
            bulk.readings_from_source(cols, src.billing_inputs(point_ids=point_ids, period=month))
        vid, used = bulk.plan(cols, month, tariffs.versions_at)
        rule_sets = {
            o: _rule_set(o, month, tariffs, rule_cache) for o in set(cols.c["org_id"][vid != 0].tolist())
        }
        block = bulk.rate_and_audit(cols, month, vid, used, rule_sets)
        skipped = int(cols.c["issued"].sum())
        point_ids = cols.ids()[cols.slow].tolist()
    bills: list[calc.BillResult] = []
    aside: list[calc.SetAside] = []
    if point_ids:
        inp = _load(point_ids, month)
        for point in inp.points:
            if point.id in inp.issued:
                skipped += 1
                continue
            reading = inp.readings.get(point.id) or PointReading(point.id, reason="no_reading")
            subs = [
                inp.readings.get(s) or PointReading(s, reason="no_reading")
                for s in inp.subs.get(point.id, ())
            ]
            out = calc.prepare(
                point=point,
                reading=reading,
                month=month,
                versions_at=tariffs.versions_at,
                history=inp.histories[point.id],
                sub_kwh=subs,
            )
            (aside if isinstance(out, calc.SetAside) else bills).append(out)  # type: ignore[arg-type]
        calc.rate_all(bills)
        by_org: dict[int, list[calc.BillResult]] = defaultdict(list)
        for b in bills:
            by_org[b.point.org_id].append(b)
        for org_id, group in by_org.items():
            calc.audit_all(group, inp.histories, _rule_set(org_id, month, tariffs, rule_cache))
    fast_n = len(block) if block is not None else 0
    energy = sum(b.energy_e4 for b in bills) + (int(block.energy.sum()) if fast_n else 0)
    amount = sum(b.total_fen for b in bills) + (int(block.total.sum()) if fast_n else 0)
    counters = {
        "bills": len(bills) + fast_n,
        "exceptions": len(aside),
        "flagged": sum(1 for b in bills if b.flags) + (block.flagged if block is not None else 0),
        "skipped_issued": skipped,
        "energy_kwh": Decimal(energy).scaleb(-4),
        "amount": Decimal(amount).scaleb(-2),
    }
    return _Result(bills, aside, dict(tariffs.used), counters, block, cols)


def _rows(p: RunPartition, result: _Result) -> tuple[list, list, list, list]:
    """The partition's bills, lines, flags and exceptions in the writer's column orders: the
    set-based bills as ready COPY text on PostgreSQL, the per-point ones as tuples. Bill ids come
    from the sequence (never rolled back, so a discarded calculation only leaves a gap)."""
    run = p.run
    fast_n = len(result.block) if result.block is not None else 0
    ids = writer.reserve_bill_ids(fast_n + len(result.bills))
    audited = run.audit_inline  # the audit stage with the calculation, or drafts audited later
    bill_rows: list = []
    line_rows: list = []
    flag_rows: list = []
    if fast_n:
        assert result.block is not None and result.cols is not None
        bill_rows, line_rows, flag_rows = bulk.block_rows(
            result.block,
            result.cols,
            ids[:fast_n],
            run_id=run.pk,
            partition_id=p.pk,
            month=run.period,
            audited=audited,
            text=writer.is_postgres(),
        )
    dumps = writer.dumps
    for i, b in enumerate(result.bills):
        ref = ids[fast_n + i]
        last = b.segments[-1].version
        trace = calc.compact_trace(
            calc.build_trace(b),
            period_start=b.period.start,
            period_end=b.period.end,
            version_id=last.version_id,
            energy_e4=b.energy_e4,
        )
        bill_rows.append(
            (
                ref,
                rules.bill_number(period_start=run.period_start, point_id=b.point.id),
                run.pk,
                p.pk,
                b.point.org_id,
                b.point.customer_id,
                b.point.account_id,
                b.point.id,
                b.period.start.isoformat(),
                b.period.end.isoformat(),
                b.point.tariff_code,
                last.version_id,
                (Bill.State.FLAGGED if b.flags else Bill.State.PASSED) if audited else Bill.State.DRAFT,
                calc.fmt4(b.energy_e4),
                calc.fmt2(b.total_fen),
                b.reading.estimated,
                len(b.segments) > 1,
                b.risk if audited else 0,
                dumps([f.code for f in b.flags] if audited else []),
                dumps(trace),
                "",
            )
        )
        for seq, (seg, code, q, price, amount) in enumerate(b.lines):
            line_rows.append((ref, seq, seg, code, calc.fmt4(q), price, calc.fmt2(amount)))
        for f in b.flags if audited else ():
            flag_rows.append((ref, f.code, f.message[:200], f.weight))
    exc_rows = [(run.pk, p.pk, s.point_id, s.reason[:30], s.message[:300]) for s in result.set_aside]
    return bill_rows, line_rows, flag_rows, exc_rows


def _write(p: RunPartition, prepared: _Prepared) -> None:
    """Delete what the partition's points have that is not issued this month, then insert: COPY
    on PostgreSQL, batched inserts elsewhere."""
    run = p.run
    writer.delete_partition_drafts(p.pk, list(p.point_ids), run.period_start, run.period_end)
    existing = set(RunTariff.objects.filter(run=run).values_list("version_id", flat=True))
    RunTariff.objects.bulk_create(
        [
            RunTariff(
                run=run,
                version_id=v.version_id,
                code=v.code,
                label=v.label,
                effective_from=v.effective_from,
                tariff=v.tariff.to_dict(),
                basic_prices={k: str(x) for k, x in v.basic_prices.items()},
            )
            for vid, v in prepared.versions.items()
            if vid not in existing
        ],
        ignore_conflicts=True,
    )
    writer.write_bills(*prepared.rows)


def refresh_run(run_id: int) -> BillingRun:
    """Run counters from its partitions; calculated once every partition is done."""
    with transaction.atomic():
        run = BillingRun.objects.select_for_update().get(pk=run_id)
        agg = run.partitions.aggregate(
            bills=Sum("bills"),
            exceptions=Sum("exceptions"),
            flagged=Sum("flagged"),
            skipped=Sum("skipped_issued"),
            energy=Sum("energy_kwh"),
            amount=Sum("amount"),
        )
        states = dict(
            run.partitions.values_list("state").annotate(n=models_count()).values_list("state", "n")
        )
        done = states.get(RunPartition.State.DONE, 0)
        run.partitions_done = done
        run.partitions_failed = states.get(RunPartition.State.FAILED, 0)
        run.bills = agg["bills"] or 0
        run.exceptions = agg["exceptions"] or 0
        run.flagged = agg["flagged"] or 0
        run.skipped_issued = agg["skipped"] or 0
        run.energy_kwh = agg["energy"] or 0
        run.amount = agg["amount"] or 0
        if run.state == BillingRun.State.PLANNED:
            run.state, run.started_at = BillingRun.State.RUNNING, run.started_at or timezone.now()
        drafted = run.partitions.filter(state=RunPartition.State.DONE, audited_at__isnull=True).exists()
        if done == run.partitions_total and run.state in (BillingRun.State.RUNNING, BillingRun.State.DRAFTED):
            run.state = BillingRun.State.DRAFTED if drafted else BillingRun.State.CALCULATED
            run.finished_at = run.finished_at or timezone.now()
        elif done == run.partitions_total and run.state == BillingRun.State.CALCULATED and drafted:
            run.state = BillingRun.State.DRAFTED
        elif done < run.partitions_total and run.state in (
            BillingRun.State.CALCULATED,
            BillingRun.State.DRAFTED,
        ):
            run.state = BillingRun.State.RUNNING
        run.save()
    return run


def models_count():
    from django.db.models import Count

    return Count("id")


def retry_partition(*, partition: RunPartition, actor: User | None, at: datetime) -> RunPartition:
    """Recalculate one partition (for instance after readings, tariffs or audit rules changed)."""
    _CACHE["run"] = None
    with transaction.atomic():
        RunPartition.objects.filter(pk=partition.pk).update(state=RunPartition.State.PENDING)
        audit.record(
            actor=actor, action="billing.partition.retry", target=partition.run, reason=partition.key, at=at
        )
    return process_partition(partition.pk)


# --- the audit stage (审核规则) ---------------------------------------------------------------------
MANUAL_CORRECTION = "manual_correction"  # an auditor recalculated the bill: it stays with an auditor


def audit_partition(*, partition: RunPartition, at: datetime) -> RunPartition:
    """The audit stage of one partition, set-based in ONE transaction: the org's audit rules (as
    they are now) over its bills not approved yet — drafts, or flagged/passed bills to audit again
    after a rule changed: each becomes flagged (with its flags and risk) or passed."""
    with transaction.atomic():
        p = RunPartition.objects.select_for_update().select_related("run").get(pk=partition.pk)
        run = p.run
        month = run.period
        inp = bulk.audit_inputs(p.pk, month, Bill.sources("audit"))
        n = len(inp.ids)
        risk = np.zeros(n, np.int64)
        codes: list[list[str]] = [[] for _ in range(n)]
        flag_rows: list[tuple[int, str, str, int]] = []
        orgs = Org.objects.in_bulk(set(inp.org_ids.tolist()))
        for org_id in sorted(orgs):
            idx = np.nonzero(inp.org_ids == org_id)[0]
            effective = rules.effective_rules(audit_rules_for(orgs[org_id], month.start))
            facts = inp.facts.take(idx)
            hits = rules.audit_columns(facts, effective)
            risk[idx] = rules.risk_scores(hits, facts.amount_fen)
            for h in hits:
                for j in np.nonzero(h.mask)[0].tolist():
                    i = int(idx[j])
                    codes[i].append(h.code)
                    flag_rows.append((inp.ids[i], h.code, h.message(j)[:200], h.weight))
        changes: dict[tuple[str, int, str], list[int]] = defaultdict(list)
        flagged = 0
        for i, bill_id in enumerate(inp.ids):
            flags = codes[i] + ([MANUAL_CORRECTION] if MANUAL_CORRECTION in inp.flags[i] else [])
            state = Bill.State.FLAGGED if flags else Bill.State.PASSED
            flagged += state == Bill.State.FLAGGED
            assert Bill.allows("audit", inp.state[i], state)
            if (state, int(risk[i]), flags) != (inp.state[i], int(inp.risk[i]), inp.flags[i]):
                changes[(state, int(risk[i]), writer.dumps(flags))].append(bill_id)
        for (state, r, flags_json), ids in changes.items():
            for k in range(0, len(ids), 5000):
                Bill.objects.filter(pk__in=ids[k : k + 5000]).update(
                    state=state, risk=r, flags=json.loads(flags_json)
                )
        writer.replace_flags(inp.ids, flag_rows)
        p.audited_at = at
        p.flagged = flagged
        p.save(update_fields=["audited_at", "flagged"])
        refresh_run(run.pk)
    return p


def _audit_parts(run: BillingRun, org: Org | None):
    parts = run.partitions.filter(state=RunPartition.State.DONE)
    if org is not None:
        parts = parts.filter(org__path__startswith=org.path)
    return parts.order_by("key")


def dispatch_audit(*, run: BillingRun, actor: User | None, at: datetime, org: Org | None = None) -> int:
    """The audit stage of the run's partitions (under `org`) as Celery tasks, one per partition
    (in-process, one after the other, without a broker). Returns the number of partitions."""
    from mmis.billing.tasks import audit_partition as task

    ids = list(_audit_parts(run, org).values_list("pk", flat=True))
    audit.record(
        actor=actor,
        action="billing.run.audit",
        target=run,
        after={"partitions": len(ids), "org": org.code if org is not None else None, "queued": True},
        at=at,
    )
    for pid in ids:
        task.delay(pid, at.isoformat())
    return len(ids)


def audit_run(*, run: BillingRun, actor: User | None, at: datetime, org: Org | None = None) -> int:
    """The audit stage over a run's bills not approved yet (the drafts of a run calculated without
    it, or every flagged/passed bill again after the audit rules changed), partition by partition;
    `org` limits it to the partitions under that org. Returns the number of bills audited."""
    n = 0
    for p in _audit_parts(run, org):
        n += Bill.objects.filter(partition=p, state__in=Bill.sources("audit")).count()
        audit_partition(partition=p, at=at)
    audit.record(
        actor=actor,
        action="billing.run.audit",
        target=run,
        after={"bills": n, "org": org.code if org is not None else None},
        at=at,
    )
    return n


# --- audit (电费审核) -----------------------------------------------------------------------------
def _audit_target(bill_ids: list[int]) -> list[Bill]:
    return list(Bill.objects.select_for_update().filter(pk__in=bill_ids).order_by("pk"))


def approve_bills(*, bill_ids: list[int], actor: User, at: datetime, note: str = "") -> int:
    """flagged or passed → audited, for every listed bill (all or nothing)."""
    with transaction.atomic():
        bills = _audit_target(bill_ids)
        bad = [b.number for b in bills if not b.can("approve")]
        if len(bills) != len(set(bill_ids)):
            raise UnableToAuditBill([FieldError("bill_ids", "some bills do not exist")])
        if bad:
            raise UnableToAuditBill([FieldError("bill_ids", f"not waiting for audit: {', '.join(bad[:10])}")])
        Bill.objects.filter(pk__in=bill_ids).update(state=Bill.State.AUDITED, audited_by=actor, audited_at=at)
        _audit_many(actor, "bill.approve", bills, at, reason=note)
    return len(bills)


def approve_clean(
    *,
    run: BillingRun,
    actor: User,
    at: datetime,
    partition: RunPartition | None = None,
    org: Org | None = None,
) -> int:
    """Bulk approval of every bill of the run the audit rules passed (or one partition's, or the
    bills under one org): passed → audited."""
    qs = Bill.objects.filter(run=run, state=Bill.State.PASSED)
    if partition is not None:
        qs = qs.filter(partition=partition)
    if org is not None:
        qs = qs.filter(org__path__startswith=org.path)
    with transaction.atomic():
        n = qs.update(state=Bill.State.AUDITED, audited_by=actor, audited_at=at)
        audit.record(
            actor=actor,
            action="billing.run.approve_clean",
            target=run,
            after={"bills": n, "partition": partition.key if partition else None},
            at=at,
        )
    return n


def return_bill(*, bill: Bill, actor: User, at: datetime, reason: str) -> Bill:
    """Send back for re-reading: the bill leaves the queue; a rerun of its partition replaces it."""
    if not reason.strip():
        raise UnableToAuditBill([FieldError("reason", "is required")])
    with transaction.atomic():
        b = Bill.objects.select_for_update().get(pk=bill.pk)
        if not b.can("return"):
            raise UnableToAuditBill([FieldError("state", f"bill {b.number} is {b.get_state_display()}")])
        b.state = Bill.State.RETURNED
        b.return_reason = reason[:200]
        b.audited_by, b.audited_at = actor, at
        b.save(update_fields=["state", "return_reason", "audited_by", "audited_at"])
        audit.record(actor=actor, action="bill.return", target=b, reason=reason, at=at)
    return b


def recalculate_bill(*, bill: Bill, usage: dict[str, Any], actor: User, at: datetime, reason: str) -> Bill:
    """Auditor's correction of a not-issued bill: new inputs (kwh, tou, kvarh, max demand) for the
    whole period, re-rated with the same tariff versions; the bill stays in the audit queue."""
    if not reason.strip():
        raise UnableToAuditBill([FieldError("reason", "is required")])
    with transaction.atomic():
        b = Bill.objects.select_for_update().get(pk=bill.pk)
        if not b.can("correct"):
            raise UnableToAuditBill(
                [FieldError("state", f"bill {b.number} cannot be changed: {b.get_state_display()}")]
            )
        trace, total, lines = _rerate(b, usage)
        before = {"amount": str(b.amount), "energy_kwh": str(b.energy_kwh)}
        BillLine.objects.filter(bill=b).delete()
        BillLine.objects.bulk_create(
            BillLine(bill=b, seq=i, segment=seg, code=code, quantity=q, price=price, amount=amount)
            for i, (seg, code, q, price, amount) in enumerate(lines)
        )
        b.trace = trace
        b.amount = total
        b.energy_kwh = sum((Decimal(s["kwh"]) for s in trace["seg"]), Decimal(0))
        b.state = Bill.State.FLAGGED  # back to an auditor
        b.flags = sorted({*b.flags, MANUAL_CORRECTION})
        b.save()
        audit.record(
            actor=actor,
            action="bill.correct",
            target=b,
            before=before,
            after={"amount": str(total), "energy_kwh": str(b.energy_kwh)},
            reason=reason,
            at=at,
        )
    return b


def run_versions(run_id: int) -> dict[int, TariffVersion]:
    from mmis.rating.tariff import parse_tariff

    out = {}
    for rt in RunTariff.objects.filter(run_id=run_id):
        out[rt.version_id] = TariffVersion(
            version_id=rt.version_id,
            code=rt.code,
            label=rt.label,
            effective_from=rt.effective_from or date(2000, 1, 1),
            effective_to=None,
            tariff=parse_tariff(rt.tariff),
            basic_prices={k: Decimal(x) for k, x in (rt.basic_prices or {}).items()},
        )
    return out


def _corrected_trace(trace: dict, usage: dict[str, Any]) -> dict:
    """The trace with new period inputs, split over the same segments pro rata by days."""
    import copy

    new = copy.deepcopy(trace)
    segs = new["seg"]
    periods = [Period(date.fromisoformat(s["start"]), date.fromisoformat(s["end"])) for s in segs]

    def split(total: Decimal) -> list[Decimal]:
        return rules.split_pro_rata(total, periods)

    if usage.get("tou"):
        tou = {k: Decimal(str(v)) for k, v in usage["tou"].items()}
        parts = {k: split(v) for k, v in tou.items()}
        for i, s in enumerate(segs):
            s["tou"] = {k: calc.fmt4(calc.to_scaled(parts[k][i])) for k in tou}
            s["kwh"] = calc.fmt4(sum(calc.to_scaled(parts[k][i]) for k in tou))
    elif "kwh" in usage:
        for s, part in zip(segs, split(Decimal(str(usage["kwh"]))), strict=True):
            s["kwh"] = calc.fmt4(calc.to_scaled(part))
    if "kvarh" in usage:
        for s, part in zip(segs, split(Decimal(str(usage["kvarh"]))), strict=True):
            s["kvarh"] = calc.fmt4(calc.to_scaled(part))
    if "max_demand_kw" in usage:
        for s in segs:
            s["md"] = calc.fmt4(calc.to_scaled(Decimal(str(usage["max_demand_kw"]))))
    ytd = Decimal(segs[0]["ytd"])
    for s in segs:  # chained segments occupy consecutive bands
        if s["ch"] or Decimal(s["ytd"]):
            s["ytd"] = calc.fmt4(calc.to_scaled(ytd))
        ytd += Decimal(s["kwh"])
    new["corrected"] = {k: str(v) if not isinstance(v, dict) else v for k, v in usage.items()}
    return new


def _validate_usage(usage: Any) -> dict[str, Any]:
    errors = []
    if not isinstance(usage, dict) or not usage:
        raise InvalidInput([FieldError("usage", "give the corrected kwh (or tou), kvarh or max_demand_kw")])
    out: dict[str, Any] = {}
    for key in ("kwh", "kvarh", "max_demand_kw"):
        if key in usage and usage[key] not in (None, ""):
            try:
                v = Decimal(str(usage[key]))
                if v < 0 or v != v.quantize(Decimal("0.0001")):
                    raise ValueError
                out[key] = v
            except (ValueError, ArithmeticError):
                errors.append(FieldError(f"usage.{key}", "must be a number ≥ 0 with at most 4 decimals"))
    if usage.get("tou"):
        tou = {}
        for k, v in usage["tou"].items():
            try:
                tou[k] = Decimal(str(v))
            except ArithmeticError:
                errors.append(FieldError(f"usage.tou.{k}", "must be a number"))
        out["tou"] = tou
    if errors:
        raise InvalidInput(errors)
    if not out:
        raise InvalidInput([FieldError("usage", "give the corrected kwh (or tou), kvarh or max_demand_kw")])
    return out


def _rerate(b: Bill, usage: dict[str, Any]) -> tuple[dict, Decimal, list[tuple]]:
    usage = _validate_usage(usage)
    trace = _corrected_trace(b.full_trace, usage)
    results = calc.scalar_rate(trace, run_versions(b.run_id))
    lines = [
        (seg, line.code, line.quantity, line.price, line.amount) for seg, r in results for line in r.lines
    ]
    total = sum((r.total for _, r in results), Decimal("0.00"))
    return trace, total, lines


# --- release (发行) -------------------------------------------------------------------------------
def payment_term_days(*, org: Org, usage_category: str, on: date) -> int:
    setting = audit_rules_for(org, on).get("payment_term_days")
    if setting and setting.get("enabled", True):
        params = setting.get("params", {})
        if usage_category in params:
            return int(params[usage_category])
        if "default" in params:
            return int(params["default"])
    return PAYMENT_TERM_DEFAULT_DAYS.get(usage_category, 15)


RELEASE_CHUNK = 250


def release_bill(*, bill_id: int, actor: User, at: datetime) -> Bill:
    """audited → issued: fix the due date, post the charge to the ledger, queue the notice."""
    b = Bill.objects.filter(pk=bill_id).only("state", "number").first()
    if b is None or b.state != Bill.State.AUDITED:
        state = b.get_state_display() if b is not None else "missing"
        raise UnableToReleaseBill(
            [FieldError("state", f"bill {b.number if b else bill_id} is {state}, not audited")]
        )
    if not _release_chunk([bill_id], actor=actor, at=at, terms={}):
        raise UnableToReleaseBill([FieldError("state", f"bill {b.number} was released meanwhile")])
    return Bill.objects.get(pk=bill_id)


def _release_chunk(bill_ids: list[int], *, actor: User, at: datetime, terms: dict) -> int:
    """Release the listed bills that are still audited, in ONE transaction: issued state and due
    dates set-based, the ledger charges of the chunk in one set-based posting (accounts, idempotent
    on each bill), the audit rows
    and the bill notices (accounts' outbox: sent after commit)."""
    with transaction.atomic():
        bills = list(
            Bill.objects.select_for_update(of=("self",))
            .filter(pk__in=bill_ids, state=Bill.State.AUDITED)
            .select_related("point", "org", "account", "customer")
            .order_by("pk")
        )
        if not bills:
            return 0
        lines: dict[int, list[dict]] = defaultdict(list)
        for bid, code, amount in writer.lines_of([b.pk for b in bills]):
            lines[bid].append({"code": code, "amount": amount})
        issued_on = timezone.localdate(at)
        by_due: dict[date, list[int]] = defaultdict(list)
        for b in bills:
            key = (b.org_id, b.point.usage_category)
            if key not in terms:
                terms[key] = payment_term_days(org=b.org, usage_category=key[1], on=issued_on)
            b.due_date = rules.due_date(issued_on=issued_on, payment_term_days=terms[key])
            b.state, b.issued_by, b.issued_at = Bill.State.ISSUED, actor, at
            by_due[b.due_date].append(b.pk)
        for due, ids in by_due.items():
            Bill.objects.filter(pk__in=ids).update(
                state=Bill.State.ISSUED, due_date=due, issued_by=actor, issued_at=at
            )
        src = source()
        if type(src).post_charge is Source.post_charge:  # the real ledger: the chunk at once
            _post_charges(bills, lines, at=at, actor=actor)
        else:
            for b in bills:
                src.post_charge(bill=b, lines=lines[b.pk], at=at, actor=actor)
        _audit_many(actor, "bill.release", bills, at, after=lambda b: {"due_date": b.due_date.isoformat()})
        _notices(bills, at)
    return len(bills)


def _post_charges(bills: list[Bill], lines: dict[int, list[dict]], *, at: datetime, actor: User) -> int:
    """The released bills as receivables in one set-based posting (accounts.services.post_charges,
    idempotent on each bill), each shaped by `inputs.charge_fields` like the per-bill path."""
    from mmis.accounts.services import ChargeItem, post_charges
    from mmis.billing.inputs import charge_fields

    fields = (charge_fields(bill=b, lines=lines[b.pk]) for b in bills)
    items = [ChargeItem(**f) for f in fields if f is not None]
    return post_charges(items=items, at=at, actor=actor) if items else 0


def _notices(bills: list[Bill], at: datetime) -> None:
    """The chunk's bill notices into accounts' outbox in one set-based enqueue (sent after
    commit); should that fail, one by one, so a notice that cannot be queued never undoes a
    release nor costs the other bills theirs. A source of its own queues them one by one."""
    src = source()
    if type(src).queue_notice is Source.queue_notice:
        try:
            with transaction.atomic():
                src.queue_notices(bills=bills, at=at)
            return
        except Exception:
            log.exception("could not queue the notices of %s bills at once; one by one", len(bills))
    for b in bills:
        _notice(b, at)


def _notice(bill: Bill, at: datetime) -> None:
    """The bill notice into accounts' outbox, inside the release (sent after commit); a notice
    that cannot be queued never undoes a release."""
    try:
        with transaction.atomic():
            source().queue_notice(bill=bill, at=at)
    except Exception:
        log.exception("could not queue the notice of bill %s", bill.number)


def _audit_many(actor: User | None, action: str, bills: list[Bill], at: datetime, *, after=None, reason=""):
    """One audit row per bill, as `audit.record` writes it, in one insert."""
    from mmis.org.models import AuditLog

    who = actor if actor is not None and actor.pk else None
    name = (str(actor) if actor is not None else "system")[:150]
    AuditLog.objects.bulk_create(
        [
            AuditLog(
                at=at,
                actor=who,
                actor_name=name,
                action=action,
                target_type=Bill._meta.label_lower,
                target_id=str(b.pk),
                target_repr=b.number,
                org_id=b.org_id,
                after=after(b) if after else None,
                reason=reason[:200],
            )
            for b in bills
        ],
        batch_size=1000,
    )


def release_run(*, run: BillingRun, actor: User, at: datetime, org: Org | None = None) -> int:
    """Release every audited bill of the run (or only those under `org`), in chunks of
    RELEASE_CHUNK bills (each chunk one transaction: a failure stops the loop, what was released
    stays released and a rerun continues)."""
    n = 0
    terms: dict = {}
    qs = Bill.objects.filter(run=run, state=Bill.State.AUDITED)
    if org is not None:
        qs = qs.filter(org__path__startswith=org.path)
    ids = list(qs.order_by("pk").values_list("pk", flat=True))
    for i in range(0, len(ids), RELEASE_CHUNK):
        n += _release_chunk(ids[i : i + RELEASE_CHUNK], actor=actor, at=at, terms=terms)
    refresh_release_state(run)
    audit.record(
        actor=actor,
        action="billing.run.release",
        target=run,
        after={"bills": n, "org": org.code if org is not None else None},
        at=at,
    )
    return n


def refresh_release_state(run: BillingRun) -> BillingRun:
    with transaction.atomic():
        r = BillingRun.objects.select_for_update().get(pk=run.pk)
        issued = Bill.objects.filter(run=r, state__in=[Bill.State.ISSUED, Bill.State.SETTLED]).count()
        open_ = Bill.objects.filter(run=r, state__in=sorted(Bill.OPEN)).count()
        r.released_bills = issued
        if issued and r.state in (BillingRun.State.CALCULATED, BillingRun.State.PARTIALLY_RELEASED):
            r.state = BillingRun.State.RELEASED if open_ == 0 else BillingRun.State.PARTIALLY_RELEASED
        r.save(update_fields=["released_bills", "state"])
    return r


# --- corrections (退补) --------------------------------------------------------------------------
CORRECTION_MANAGER_LIMIT = Decimal("5000.00")  # above this, a manager approves (DOMAIN §4.4 levels)


def _next_correction_number(at: datetime) -> str:
    prefix = f"TB{at:%Y%m}"
    last = (
        Correction.objects.filter(number__startswith=prefix)
        .order_by("-number")
        .values_list("number", flat=True)
    )
    n = int(last[0][len(prefix) :]) + 1 if last else 1
    return f"{prefix}{n:06d}"


def request_correction(
    *, bill: Bill, reason: str, usage: dict[str, Any], actor: User, at: datetime, note: str = ""
) -> Correction:
    """A credit or debit document against an issued bill: the whole period re-rated with the
    corrected inputs and the same tariff versions; the difference of the two results is billed."""
    errors = []
    if reason not in Correction.Reason.values:
        errors.append(FieldError("reason", f"must be one of {', '.join(Correction.Reason.values)}"))
    if bill.state not in (Bill.State.ISSUED, Bill.State.SETTLED):
        errors.append(FieldError("bill", f"bill {bill.number} is not issued: correct it in the audit queue"))
    if errors:
        raise UnableToCorrectBill(errors)
    trace, total, lines = _rerate(bill, usage)
    original = [(ln.code, ln.quantity, ln.amount) for ln in bill.lines.order_by("seq")]
    diff = rules.correction_lines(original, [(c, q, a) for _, c, q, _, a in lines])
    amount = total - bill.amount
    if amount == 0:
        raise UnableToCorrectBill(
            [FieldError("usage", "the corrected inputs give the same bill: nothing to correct")]
        )
    with transaction.atomic():
        c = Correction.objects.create(
            number=_next_correction_number(at),
            bill=bill,
            org=bill.org,
            kind=Correction.Kind.DEBIT if amount > 0 else Correction.Kind.CREDIT,
            reason=reason,
            note=note[:300],
            original_usage={"seg": bill.full_trace["seg"]},
            corrected_usage={"seg": trace["seg"], "input": trace.get("corrected")},
            original_amount=bill.amount,
            corrected_amount=total,
            amount=amount,
            lines=[{"code": code, "quantity": str(q), "amount": str(a)} for code, q, a in diff],
            requested_by=actor,
            requested_at=at,
        )
        audit.record(actor=actor, action="correction.request", target=c, after={"amount": str(amount)}, at=at)
    return c


def approve_correction(*, correction: Correction, actor: User, at: datetime, note: str = "") -> Correction:
    with transaction.atomic():
        c = (
            Correction.objects.select_for_update()
            .select_related("bill", "bill__account", "bill__point")
            .get(pk=correction.pk)
        )
        if c.state != Correction.State.PENDING:
            raise UnableToCorrectBill(
                [FieldError("state", f"correction {c.number} is {c.get_state_display()}")]
            )
        if c.requested_by_id == actor.pk:
            raise UnableToCorrectBill(
                [FieldError("actor", "a correction is approved by someone other than its requester")]
            )
        if abs(c.amount) > CORRECTION_MANAGER_LIMIT and not actor.has_role("manager", "administrator"):
            raise UnableToCorrectBill(
                [FieldError("actor", f"above {CORRECTION_MANAGER_LIMIT} 元 a manager approves")]
            )
        days = payment_term_days(org=c.org, usage_category=c.bill.point.usage_category, on=at.date())
        c.due_date = rules.due_date(issued_on=timezone.localdate(at), payment_term_days=days)
        c.state = Correction.State.APPROVED
        c.decided_by, c.decided_at, c.decision_note = actor, at, note[:200]
        c.save()
        source().post_adjustment(correction=c, at=at, actor=actor)
        audit.record(
            actor=actor, action="correction.approve", target=c, after={"amount": str(c.amount)}, at=at
        )
    return c


def reject_correction(*, correction: Correction, actor: User, at: datetime, note: str) -> Correction:
    if not note.strip():
        raise UnableToCorrectBill([FieldError("note", "is required")])
    with transaction.atomic():
        c = Correction.objects.select_for_update().get(pk=correction.pk)
        if c.state != Correction.State.PENDING:
            raise UnableToCorrectBill(
                [FieldError("state", f"correction {c.number} is {c.get_state_display()}")]
            )
        c.state = Correction.State.REJECTED
        c.decided_by, c.decided_at, c.decision_note = actor, at, note[:200]
        c.save()
        audit.record(actor=actor, action="correction.reject", target=c, reason=note, at=at)
    return c


def stale_partitions(run: BillingRun, *, older_than: timedelta, now: datetime) -> list[int]:
    """Partitions left `running` longer than `older_than` (their worker died)."""
    return list(
        run.partitions.filter(state=RunPartition.State.RUNNING, started_at__lt=now - older_than).values_list(
            "pk", flat=True
        )
    )
