"""Reads of the readings app: billing inputs (set-based), daily frozen data, books and plan
progress, reader routes, the exceptions queue, terminals and commands — always through the
caller's data scope where a user is given."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from mmis.assets.models import Meter
from mmis.common.errors import InvalidInput, NotFound
from mmis.common.periods import Period, next_month_start
from mmis.customers.models import MeteringPoint
from mmis.org.models import Org, User
from mmis.org.scope import DataScope
from mmis.readings import rules
from mmis.readings.models import (
    TOU_REGISTERS,
    BookMembership,
    DailyFrozenReading,
    MeterChange,
    MeterReading,
    ReadingBook,
    ReadingException,
    ReadingPlan,
    RemoteCommand,
    Terminal,
    ValidationSettings,
)
from mmis.workflow.models import ProcessInstance, Task

READING_FIELDS = ("total", "sharp", "peak", "flat", "valley", "reactive")
LOOKBACK_DAYS = 100


def _dec_regs(d: dict | None) -> dict[str, Decimal | None] | None:
    if not d:
        return None
    return {n: (Decimal(str(d[n])) if d.get(n) not in (None, "") else None) for n in READING_FIELDS}


def metering_changes(
    point_ids: Iterable[int], *, closed_orders: Collection[int] = ()
) -> dict[int, list[rules.MeteringChange]]:
    """The recorded meter/multiplier changes (MeterChange) of the points, oldest first, as the
    rules see them: registers as Decimals (a multiplier change read on no register takes the
    day's frozen registers when the terminal sent them), the new meter's digit count and whether
    the work order is archived. One query when there are none (the usual case)."""
    ids = list(point_ids)
    rows = list(
        MeterChange.objects.filter(metering_point_id__in=ids)
        .select_related("work_order")
        .order_by("metering_point_id", "changed_on", "pk")
    )
    if not rows:
        return {}
    digits = dict(
        Meter.objects.filter(pk__in={r.new_meter_id for r in rows if r.new_meter_id}).values_list(
            "pk", "register_digits"
        )
    )
    unread = [r for r in rows if not r.old_final and not r.meter_replaced]
    frozen: dict[tuple[int, date], dict] = {}
    if unread:
        for f in DailyFrozenReading.objects.filter(
            metering_point_id__in={r.metering_point_id for r in unread},
            day__in={r.changed_on for r in unread},
        ).values("metering_point_id", "day", *READING_FIELDS):
            frozen[(f["metering_point_id"], f["day"])] = f
    out: dict[int, list[rules.MeteringChange]] = defaultdict(list)
    for r in rows:
        old_final, new_initial = _dec_regs(r.old_final), _dec_regs(r.new_initial)
        if old_final is None and not r.meter_replaced:
            f = frozen.get((r.metering_point_id, r.changed_on))
            if f is not None:
                old_final = new_initial = _regs(f)
        wo = r.work_order
        out[r.metering_point_id].append(
            rules.MeteringChange(
                day=r.changed_on,
                old_meter=r.old_meter_id,
                new_meter=r.new_meter_id,
                old_multiplier=r.old_multiplier,
                new_multiplier=r.new_multiplier,
                new_register_digits=digits.get(r.new_meter_id),
                old_final=old_final,
                new_initial=new_initial if new_initial is not None or r.meter_replaced else old_final,
                work_order=wo.number if wo is not None else "",
                closed=wo is not None
                and (wo.state == ProcessInstance.State.COMPLETED or wo.pk in closed_orders),
            )
        )
    return dict(out)


def tariff_changes(
    point_ids: Iterable[int], *, since: date, closed_orders: Collection[int] = ()
) -> dict[int, list[rules.TariffChange]]:
    """The tariff code changes of the points made on or after `since`, from the customer file's
    history (every saved change of a metering point is a history row), oldest first, each with
    the work order that made it: an order whose data names the point's customer, the point (or
    none: the main point) and the new tariff code, as the 改类 process records them; `closed` once
    its archive step is done (or it is completed, or in `closed_orders`). Two cheap queries when
    no point changed since `since` (the usual case)."""
    ids = list(point_ids)
    history = MeteringPoint.history.model
    start = timezone.make_aware(datetime.combine(since, time.min))
    # the file's changes since `start` (a range on the history's date index; few), then the points'
    changed = set(
        history.objects.filter(history_type="~", history_date__gte=start)
        .values_list("id", flat=True)
        .distinct()
    ) & set(ids)
    if not changed:
        return {}
    out: dict[int, list[rules.TariffChange]] = defaultdict(list)
    prev: dict[int, str] = {}
    rows = (
        history.objects.filter(id__in=changed)
        .order_by("id", "history_id")  # in the order they were saved
        .values("id", "history_date", "tariff_code", "point_no", "customer__customer_no", "role")
    )
    for h in rows:
        pid, code = h["id"], h["tariff_code"] or ""
        if pid in prev and prev[pid] != code and h["history_date"] >= start:
            order = _tariff_order(h, code)
            out[pid].append(
                rules.TariffChange(
                    day=timezone.localtime(h["history_date"]).date(),
                    old_code=prev[pid],
                    new_code=code,
                    work_order=order.number if order is not None else "",
                    closed=order is not None and _archived(order, closed_orders),
                )
            )
        prev[pid] = code
    return dict(out)


def _tariff_order(h: dict, code: str) -> ProcessInstance | None:
    """The work order that set a point's tariff code (newest first, started before the change)."""
    if not code:
        return None
    candidates = ProcessInstance.objects.filter(
        data__customer_no=h["customer__customer_no"],
        data__new_tariff_code=code,
        started_at__lte=h["history_date"],
    ).order_by("-started_at", "-pk")
    for order in candidates[:20]:
        named = order.data.get("point_no") or ""
        if named == h["point_no"] or (not named and h["role"] == MeteringPoint.Role.MAIN):
            return order
    return None


def _archived(order: ProcessInstance, closed_orders: Collection[int]) -> bool:
    return (
        order.state == ProcessInstance.State.COMPLETED
        or order.pk in closed_orders
        or Task.objects.filter(instance=order, step_code="archive", state=Task.State.COMPLETED).exists()
    )


@dataclass(frozen=True, slots=True)
class BillingSegment:
    """A part of a period with one meter and one multiplier: [start_date, end_date), its kWh
    (total; `kwh_by_rate` and `kvarh` when the registers have them) and how it was measured:
    `registers` (from `start` to `end` registers) or `pro_rata_days` (a share of the registers'
    delta by days: a multiplier change with no reading at the change)."""

    start_date: date | None
    end_date: date | None
    meter_id: int | None
    multiplier: Decimal
    kwh: Decimal
    basis: str
    start: dict[str, Decimal | None] | None = None
    end: dict[str, Decimal | None] | None = None
    kwh_by_rate: dict[str, Decimal] | None = None
    kvarh: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BillingReading:
    """What billing needs of one metering point for one period.

    The end reading is the point's latest billable reading dated inside the period; the start
    reading is the billable reading before it (so a period runs from one reading date to the next,
    DOMAIN.md §2.2). `reason` says why a point is not billable: `missing` (no reading in the
    period), `exception` / `pending_validation` (its reading is held by VEE), `no_start_reading`
    (first reading of the point), `meter_changed` (start and end are on different meters and the
    replacement's final/initial readings were not recorded), `invalid_energy` (registers that give
    no energy).

    A period with a recorded meter replacement or multiplier change (MeterChange) is billable: its
    energy is the sum over `segments` (DOMAIN.md §2.1: (old final − start) × old multiplier + (end −
    new initial) × new multiplier; a multiplier change splits at the registers read at the change,
    else at the day's frozen registers, else pro rata by days). `multiplier` is the one in force at
    the end reading; `meter_changed` / `multiplier_changed` say that the period holds a change
    (billing audits such bills, §4); `segments` is empty when nothing changed.
    """

    point_id: int
    billable: bool
    reason: str | None = None
    detail: str = ""
    start_date: date | None = None
    end_date: date | None = None
    start: dict[str, Decimal | None] | None = None
    end: dict[str, Decimal | None] | None = None
    multiplier: Decimal = Decimal(1)
    register_digits: int | None = None
    kwh: Decimal | None = None
    kwh_by_rate: dict[str, Decimal] | None = None  # sharp/peak/flat/valley for TOU points
    rollover: bool = False
    kvarh: Decimal | None = None
    max_demand_kw: Decimal | None = None
    estimated: bool = False
    reading_id: int | None = None
    start_reading_id: int | None = None
    tou: bool = False
    meter_changed: bool = False
    multiplier_changed: bool = False
    segments: tuple[BillingSegment, ...] = ()

    @property
    def days(self) -> int | None:
        if self.start_date is None or self.end_date is None:
            return None
        return (self.end_date - self.start_date).days


def _regs(r: dict) -> dict[str, Decimal | None]:
    return {n: r[n] for n in READING_FIELDS}


_ROW_FIELDS = (
    "pk",
    "metering_point_id",
    "meter_id",
    "reading_date",
    "status",
    "source",
    "max_demand",
    "multiplier",
    *READING_FIELDS,
)


def billing_inputs(*, point_ids: Iterable[int], period: Period) -> dict[int, BillingReading]:
    """Start/end registers, multiplier and billed energy of every point for `period`, in five
    queries whatever the number of points (points, readings of the period and the lookback
    window, meters, metering changes, and the older start readings of the few points that need
    them)."""
    ids = sorted(set(point_ids))
    if not ids:
        return {}
    points = {p["pk"]: p for p in MeteringPoint.objects.filter(pk__in=ids).values("pk", "multiplier", "tou")}
    since = period.start - timedelta(days=LOOKBACK_DAYS)
    by_point: dict[int, list[dict]] = defaultdict(list)
    for r in (
        MeterReading.objects.filter(
            metering_point_id__in=ids, reading_date__gte=since, reading_date__lt=period.end
        )
        .order_by("metering_point_id", "reading_date")
        .values(*_ROW_FIELDS)
    ):
        by_point[r["metering_point_id"]].append(r)
    ends: dict[int, dict] = {}
    held: dict[int, dict] = {}
    for pid, rows in by_point.items():
        inside = [r for r in rows if r["reading_date"] >= period.start]
        billable = [r for r in inside if r["status"] in MeterReading.BILLABLE]
        if billable:
            ends[pid] = billable[-1]
        elif inside:
            held[pid] = inside[-1]
    starts: dict[int, dict] = {}
    need_older = []
    for pid, end in ends.items():
        before = [
            r
            for r in by_point[pid]
            if r["reading_date"] < end["reading_date"] and r["status"] in MeterReading.BILLABLE
        ]
        if before:
            starts[pid] = before[-1]
        else:
            need_older.append(pid)
    if need_older:
        for r in (
            MeterReading.objects.filter(
                metering_point_id__in=need_older, reading_date__lt=since, status__in=MeterReading.BILLABLE
            )
            .order_by("metering_point_id", "reading_date")
            .values(*_ROW_FIELDS)
        ):
            starts[r["metering_point_id"]] = r  # ascending: the last one wins
    meter_ids = {r["meter_id"] for r in ends.values() if r["meter_id"]} | {
        r["meter_id"] for r in starts.values() if r["meter_id"]
    }
    digits = dict(Meter.objects.filter(pk__in=meter_ids).values_list("pk", "register_digits"))
    changes = metering_changes(ends) if ends else {}
    out: dict[int, BillingReading] = {}
    for pid in ids:
        p = points.get(pid)
        if p is None:
            continue
        mult, tou = p["multiplier"], p["tou"]
        end = ends.get(pid)
        if end is None:
            h = held.get(pid)
            if h is None:
                out[pid] = BillingReading(
                    pid, False, "missing", f"no reading in {period}", multiplier=mult, tou=tou
                )
            else:
                reason = "exception" if h["status"] == MeterReading.Status.EXCEPTION else "pending_validation"
                out[pid] = BillingReading(
                    pid,
                    False,
                    reason,
                    f"reading of {h['reading_date']} is {h['status']}",
                    end_date=h["reading_date"],
                    end=_regs(h),
                    multiplier=h["multiplier"] or mult,
                    reading_id=h["pk"],
                    tou=tou,
                )
            continue
        out[pid] = _billable(pid, starts.get(pid), end, mult=mult, tou=tou, digits=digits, changes=changes)
    return out


def _billable(
    pid: int,
    start: dict | None,
    end: dict,
    *,
    mult: Decimal,
    tou: bool,
    digits: dict[int, int | None],
    changes: dict[int, list[rules.MeteringChange]],
) -> BillingReading:
    end_mult = end["multiplier"] or mult
    common: dict = {
        "end_date": end["reading_date"],
        "end": _regs(end),
        "multiplier": end_mult,
        "register_digits": digits.get(end["meter_id"]),
        "reading_id": end["pk"],
        "estimated": end["source"] == MeterReading.Source.ESTIMATE,
        "tou": tou,
    }
    if start is None:
        return BillingReading(pid, False, "no_start_reading", "first reading of the point", **common)
    common.update(start_date=start["reading_date"], start=_regs(start), start_reading_id=start["pk"])
    inside = rules.changes_in_period(
        changes.get(pid, []),
        start_date=start["reading_date"],
        end_date=end["reading_date"],
        start_meter=start["meter_id"],
        end_meter=end["meter_id"],
    )
    replaced_to = {c.new_meter for c in inside if c.meter_replaced}
    if (
        start["meter_id"]
        and end["meter_id"]
        and start["meter_id"] != end["meter_id"]
        and end["meter_id"] not in replaced_to
    ):
        return BillingReading(
            pid,
            False,
            "meter_changed",
            "the meter was replaced in the period without recorded final and initial readings",
            meter_changed=True,
            **common,
        )
    multiplier_changed = any(c.old_multiplier != c.new_multiplier for c in inside) or (
        start["multiplier"] is not None and start["multiplier"] != end_mult
    )
    try:
        segs = rules.segments(
            start=_regs(start),
            end=_regs(end),
            start_date=start["reading_date"],
            end_date=end["reading_date"],
            multiplier=inside[0].old_multiplier if inside else end_mult,
            register_digits=digits.get(start["meter_id"]) if start["meter_id"] else common["register_digits"],
            changes=inside,
            meter=start["meter_id"],
        )
        total = rules.period_energy(segs, "total")
        rates = {n: rules.period_energy(segs, n) for n in TOU_REGISTERS} if tou else {}
        by_rate = (
            {n: e.kwh for n, e in rates.items() if e is not None}
            if rates and all(e is not None for e in rates.values())
            else None
        )
        kv = rules.period_energy(segs, "reactive")
        parts = _billing_segments(segs, tou=tou) if inside else ()
    except InvalidInput as exc:
        return BillingReading(pid, False, "invalid_energy", str(exc), **common)
    if total is None:
        return BillingReading(pid, False, "invalid_energy", "no total register", **common)
    return BillingReading(
        pid,
        True,
        kwh=total.kwh,
        kwh_by_rate=by_rate,
        rollover=total.rollover,
        kvarh=kv.kwh if kv is not None else None,
        max_demand_kw=end["max_demand"] * end_mult if end["max_demand"] is not None else None,
        meter_changed=bool(replaced_to),
        multiplier_changed=multiplier_changed,
        segments=parts,
        **common,
    )


def _billing_segments(segs: Sequence[rules.Segment], *, tou: bool) -> tuple[BillingSegment, ...]:
    """Each part of each segment with its own kWh (total, TOU rates, reactive)."""
    out = []
    for seg in segs:
        shares: dict[str, list[Decimal] | None] = {}
        for name in ("total", *TOU_REGISTERS, "reactive"):
            en = rules.segment_energy(seg, name)
            shares[name] = rules.day_shares(en.delta, seg.parts) if en is not None else None
        whole = len(seg.parts) == 1
        total, react = shares["total"], shares["reactive"]
        assert total is not None
        for i, (a, b, k) in enumerate(seg.parts):
            rates = None
            if tou and all(shares[n] is not None for n in TOU_REGISTERS):
                rates = {n: shares[n][i] * k for n in TOU_REGISTERS}  # type: ignore[index]
            out.append(
                BillingSegment(
                    start_date=a,
                    end_date=b,
                    meter_id=seg.meter,
                    multiplier=k,
                    kwh=total[i] * k,
                    basis="registers" if whole else "pro_rata_days",
                    start=dict(seg.start) if whole else None,
                    end=dict(seg.end) if whole else None,
                    kwh_by_rate=rates,
                    kvarh=react[i] * k if react is not None else None,
                )
            )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FrozenDay:
    day: date
    meter_id: int
    total: Decimal
    sharp: Decimal | None
    peak: Decimal | None
    flat: Decimal | None
    valley: Decimal | None
    reactive: Decimal | None
    flags: tuple[str, ...] = ()


def daily_frozen(*, point_ids: Iterable[int], start: date, end: date) -> dict[int, list[FrozenDay]]:
    """Daily frozen registers of the points for days in [start, end), oldest first (one query)."""
    out: dict[int, list[FrozenDay]] = defaultdict(list)
    for r in (
        DailyFrozenReading.objects.filter(metering_point_id__in=list(point_ids), day__gte=start, day__lt=end)
        .order_by("metering_point_id", "day")
        .values("metering_point_id", "meter_id", "day", "flags", *READING_FIELDS)
    ):
        out[r["metering_point_id"]].append(
            FrozenDay(
                r["day"],
                r["meter_id"],
                r["total"],
                r["sharp"],
                r["peak"],
                r["flat"],
                r["valley"],
                r["reactive"],
                tuple(x for x in r["flags"].split(",") if x),
            )
        )
    return dict(out)


# --- books, plans, routes ------------------------------------------------------------------------
def books(user: User) -> QuerySet[ReadingBook]:
    qs = DataScope.for_user(user).filter(ReadingBook.objects.all()).select_related("org", "reader")
    if user.has_role("meter_reader") and not user.has_role("billing_auditor", "manager", "administrator"):
        qs = qs.filter(reader=user)
    return qs


def get_book(user: User, pk: int) -> ReadingBook:
    book = (
        DataScope.for_user(user)
        .filter(ReadingBook.objects.select_related("org", "reader"))
        .filter(pk=pk)
        .first()
    )
    if book is None:
        raise NotFound(f"reading book {pk} not found")
    return book


@dataclass
class Progress:
    total: int = 0
    read: int = 0
    valid: int = 0
    exception: int = 0
    estimated: int = 0
    ami: int = 0

    @property
    def percent(self) -> int:
        return round(100 * self.read / self.total) if self.total else 0


def month_range(month: date) -> Period:
    m = month.replace(day=1)
    return Period(m, next_month_start(m))


def book_progress(book_ids: Sequence[int], month: date) -> dict[int, Progress]:
    """Per book: points, read this month, and how the readings stand (two queries)."""
    p = month_range(month)
    out = {bid: Progress() for bid in book_ids}
    for row in BookMembership.objects.filter(book_id__in=book_ids).values("book_id").annotate(n=Count("pk")):
        out[row["book_id"]].total = row["n"]
    rows = (
        MeterReading.objects.filter(
            reading_date__gte=p.start,
            reading_date__lt=p.end,
            metering_point__book_membership__book_id__in=book_ids,
        )
        .values("metering_point__book_membership__book_id", "status", "source")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        pr = out[row["metering_point__book_membership__book_id"]]
        pr.read += row["n"]
        if row["status"] in (MeterReading.Status.VALID, MeterReading.Status.ACCEPTED):
            pr.valid += row["n"]
        elif row["status"] == MeterReading.Status.ESTIMATED:
            pr.estimated += row["n"]
        elif row["status"] == MeterReading.Status.EXCEPTION:
            pr.exception += row["n"]
        if row["source"] == MeterReading.Source.AMI:
            pr.ami += row["n"]
    return out


def reader_progress(books_qs: Iterable[ReadingBook], month: date) -> list[dict]:
    books_list = list(books_qs)
    prog = book_progress([b.pk for b in books_list], month)
    by_reader: dict[str, Progress] = defaultdict(Progress)
    for b in books_list:
        name = str(b.reader) if b.reader else "—"
        agg, pr = by_reader[name], prog[b.pk]
        agg.total += pr.total
        agg.read += pr.read
        agg.valid += pr.valid
        agg.exception += pr.exception
        agg.estimated += pr.estimated
        agg.ami += pr.ami
    return [{"reader": k, "progress": v} for k, v in sorted(by_reader.items())]


@dataclass
class RouteStop:
    sequence: int
    point: MeteringPoint
    meter: Meter | None
    previous: MeterReading | None
    typical_kwh: Decimal | None  # mean billed kWh of the last 3 periods
    current: MeterReading | None
    open_exceptions: list[ReadingException] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.current is not None and self.current.status != MeterReading.Status.EXCEPTION

    @property
    def sent_back(self) -> bool:
        return self.current is not None and self.current.status == MeterReading.Status.EXCEPTION


def route(book: ReadingBook, month: date) -> list[RouteStop]:
    """The reader's route: the book's points in reading order with the previous reading, typical
    use and this month's reading (a handful of queries for the whole book)."""
    p = month_range(month)
    members = list(
        BookMembership.objects.filter(book=book)
        .select_related("metering_point", "metering_point__address")
        .order_by("sequence")
    )
    pids = [m.metering_point_id for m in members]
    meters = {
        m.metering_point_id: m for m in Meter.objects.filter(metering_point_id__in=pids, state="installed")
    }
    history: dict[int, list[MeterReading]] = defaultdict(list)
    current: dict[int, MeterReading] = {}
    for r in MeterReading.objects.filter(
        metering_point_id__in=pids, reading_date__lt=p.end, reading_date__gte=p.start - timedelta(days=130)
    ).order_by("reading_date"):
        if r.reading_date >= p.start:
            current[r.metering_point_id] = r
        elif r.status in MeterReading.BILLABLE:
            history[r.metering_point_id].append(r)
    open_exc: dict[int, list[ReadingException]] = defaultdict(list)
    for e in ReadingException.objects.filter(metering_point_id__in=pids, state=ReadingException.State.OPEN):
        open_exc[e.metering_point_id].append(e)
    stops = []
    for m in members:
        h = history.get(m.metering_point_id, [])
        typical = None
        if len(h) >= 2:
            tail = h[-4:]
            pairs = list(pairwise(tail))
            deltas = [
                (b.total - a.total) * m.metering_point.multiplier for a, b in pairs if b.total >= a.total
            ]
            if deltas:
                typical = (sum(deltas, Decimal(0)) / len(deltas)).quantize(Decimal(1))
        stops.append(
            RouteStop(
                m.sequence,
                m.metering_point,
                meters.get(m.metering_point_id),
                h[-1] if h else None,
                typical,
                current.get(m.metering_point_id),
                open_exc.get(m.metering_point_id, []),
            )
        )
    return stops


def exceptions(
    user: User,
    *,
    state: str = "open",
    rule: str = "",
    owner: User | None = None,
    overdue_on: date | None = None,
) -> QuerySet[ReadingException]:
    """The exceptions queue in the user's scope, oldest first; `owner` keeps one auditor's,
    `overdue_on` the open ones whose deadline is before that day."""
    qs = DataScope.for_user(user).filter(ReadingException.objects.all())
    if state:
        qs = qs.filter(state=state)
    if rule:
        qs = qs.filter(rule=rule)
    if owner is not None:
        qs = qs.filter(owner=owner)
    if overdue_on is not None:
        qs = qs.filter(state=ReadingException.State.OPEN, due_on__lt=overdue_on)
    return qs.select_related("metering_point", "reading", "decided_by", "owner", "work_order").order_by(
        "created_at", "pk"
    )


def overdue_count(user: User, *, today: date, owner: User | None = None) -> int:
    return exceptions(user, owner=owner, overdue_on=today).count()


def get_exception(user: User, pk: int) -> ReadingException:
    e = exceptions(user, state="").filter(pk=pk).first()
    if e is None:
        raise NotFound(f"reading exception {pk} not found")
    return e


def readings(
    user: User,
    *,
    point_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    status: str = "",
) -> QuerySet[MeterReading]:
    qs = DataScope.for_user(user).filter(MeterReading.objects.all())
    if point_id:
        qs = qs.filter(metering_point_id=point_id)
    if since:
        qs = qs.filter(reading_date__gte=since)
    if until:
        qs = qs.filter(reading_date__lt=until)
    if status:
        qs = qs.filter(status=status)
    return qs.select_related("metering_point").order_by("-reading_date", "-pk")


def get_reading(user: User, pk: int) -> MeterReading:
    r = readings(user).filter(pk=pk).first()
    if r is None:
        raise NotFound(f"reading {pk} not found")
    return r


def meter_changes(point: MeteringPoint) -> QuerySet[MeterChange]:
    """A point's recorded meter and multiplier changes, newest first (the caller checked scope)."""
    return (
        MeterChange.objects.filter(metering_point=point)
        .select_related("old_meter", "new_meter", "work_order")
        .order_by("-changed_on", "-pk")
    )


def points_in_scope(user: User) -> QuerySet[MeteringPoint]:
    return DataScope.for_user(user).filter(MeteringPoint.objects.all())


def terminals(user: User) -> QuerySet[Terminal]:
    return (
        DataScope.for_user(user)
        .filter(Terminal.objects.all())
        .select_related("org")
        .annotate(meter_count=Count("links"))
        .order_by("code")
    )


def commands(user: User, *, state: str = "") -> QuerySet[RemoteCommand]:
    qs = (
        DataScope.for_user(user)
        .filter(RemoteCommand.objects.all())
        .select_related("terminal", "meter", "requested_by")
    )
    if state:
        qs = qs.filter(state=state)
    return qs


def plans(user: User, month: date) -> QuerySet[ReadingPlan]:
    return (
        DataScope.for_user(user)
        .filter(ReadingPlan.objects.filter(month=month.replace(day=1)))
        .select_related("book")
    )


def open_exception_counts(user: User) -> dict[str, int]:
    rows = exceptions(user).values("rule").annotate(n=Count("pk"))
    return {r["rule"]: r["n"] for r in rows}


def q_search(text: str) -> Q:
    return Q(metering_point__point_no__icontains=text) | Q(metering_point__name__icontains=text)


# --- VEE settings per org ----------------------------------------------------------------------
@dataclass
class SettingRow:
    """One VEE setting as it applies at an org: the value in force, the org it comes from (None:
    the system default of DOMAIN.md) and the org's own value (None: inherited)."""

    name: str
    label: str
    value: object
    source: Org | None
    own: object
    default: object


def validation_settings(org: Org) -> list[SettingRow]:
    """Every VEE setting at `org` (thresholds, seasonal usage categories, exception deadline days,
    default auditor) with where it is inherited from; the caller checked the org is in scope."""
    paths = org.ancestor_paths()  # nearest first
    rows = {
        s.org.path: s
        for s in ValidationSettings.objects.filter(org__path__in=paths).select_related("org", "auditor")
    }
    defaults = rules.DEFAULT_THRESHOLDS
    out = []
    for name in (*rules.Thresholds.names(), "auditor"):
        label = str(ValidationSettings._meta.get_field(name).verbose_name)
        default = getattr(defaults, name, None)
        value, source = default, None
        for path in paths:
            s = rows.get(path)
            if s is not None and getattr(s, name) is not None:
                value, source = getattr(s, name), s.org
                break
        own_row = rows.get(org.path)
        own = getattr(own_row, name) if own_row is not None else None
        if name == "seasonal_categories":
            value = tuple(c for c in value.split(",") if c) if isinstance(value, str) else value
        out.append(SettingRow(name, label, value, source, own, default))
    return out


def auditor_choices(org: Org) -> QuerySet[User]:
    """Who may be an org's default auditor: active billing auditors of the org or an org above
    it (they see the org's exceptions)."""
    return (
        User.objects.filter(is_active=True, roles__code="billing_auditor", org__path__in=org.ancestor_paths())
        .select_related("org")
        .distinct()
        .order_by("org__path", "username")
    )


def settings_orgs(user: User) -> QuerySet[Org]:
    """The orgs whose VEE settings the user sees and sets: the user's own subtree."""
    return DataScope.for_user(user).orgs().exclude(level=Org.Level.SERVICE_HALL).order_by("path")


def assignable_owners(exception: ReadingException, roles: Sequence[str]) -> QuerySet[User]:
    """Who an exception can be handed to: active users with one of `roles` whose data scope holds
    the exception's org (the service checks again)."""
    return (
        User.objects.filter(
            is_active=True,
            roles__code__in=list(roles),
            scope_grants__org__path__in=exception.org.ancestor_paths(),
        )
        .distinct()
        .order_by("username")
    )


def metering_orders(point: MeteringPoint) -> QuerySet[ProcessInstance]:
    """The metering work orders (换表 / CT-PT) opened for a point, newest first (the caller checked
    scope)."""
    return ProcessInstance.objects.filter(
        definition__code="meter_change", subject_type="customers.meteringpoint", subject_id=str(point.pk)
    ).order_by("-started_at", "-pk")
