"""Step: meter reading for the demo — reading books from the customer file's book codes (about 300
points each), their members in order, a year of monthly readings of every point (consistent
registers per usage category with seasonal use; TOU registers for TOU points; kvarh and maximum
demand for two-part points), mostly valid, some estimated, a few exceptions waiting in the queue
and a few points not read; AMI terminals for automated books with 45 days of daily frozen
readings. Deterministic (seeded) and bulk (COPY on PostgreSQL)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import numpy as np

from mmis.cli.demo.context import DemoContext

MONTHS = 13  # an opening reading and twelve billed months
FROZEN_DAYS = 45
CHUNK = 20_000
WRAP = 10**8  # 6 integer digits, hundredths
# mean monthly kWh by usage category; seasonal factor by month
MEAN_KWH = {"residential": 230.0, "general_ci": 4200.0, "large_industry": 260_000.0, "agricultural": 900.0}
SEASON = {
    1: 1.2,
    2: 1.1,
    3: 0.92,
    4: 0.85,
    5: 0.9,
    6: 1.05,
    7: 1.35,
    8: 1.4,
    9: 1.05,
    10: 0.9,
    11: 0.95,
    12: 1.15,
}
SHARES = np.array([0.10, 0.30, 0.35, 0.25])
EXC_RULES = ["jump", "zero_use", "meter_fault", "tou_imbalance", "drop"]


def _month_add(d: date, k: int) -> date:
    m = d.month - 1 + k
    return date(d.year + m // 12, m % 12 + 1, 1)


def _c(a: np.ndarray) -> list[str]:
    """Hundredths (int) → decimal text."""
    a = np.asarray(a, dtype=np.int64)
    return [f"{q}.{r:02d}" for q, r in zip((a // 100).tolist(), (a % 100).tolist(), strict=True)]


def build_readings(ctx: DemoContext) -> None:
    from django.db import transaction
    from django.utils import timezone

    from mmis.assets.models import Meter
    from mmis.cli.demo.loader import Loader
    from mmis.customers.models import MeteringPoint
    from mmis.readings.models import (
        BookMembership,
        DailyFrozenReading,
        MeterReading,
        ReadingBook,
        ReadingException,
        ReadingPlan,
        Terminal,
        TerminalMeter,
    )

    if ReadingBook.objects.exists():
        return
    report = ctx.report("readings")
    rng = np.random.default_rng(ctx.seed + 11)
    rows = list(
        MeteringPoint.objects.exclude(reading_book_code="")
        .order_by("pk")
        .values_list(
            "pk",
            "org_id",
            "usage_category",
            "multiplier",
            "tou",
            "basic_charge_mode",
            "reading_book_code",
            "contract_capacity_kva",
        )
    )
    if not rows:
        return
    meters = dict(
        Meter.objects.filter(state="installed", metering_point__isnull=False).values_list(
            "metering_point_id", "pk"
        )
    )
    n = len(rows)
    pid = np.array([r[0] for r in rows], dtype=np.int64)
    org = np.array([r[1] for r in rows], dtype=np.int64)
    cat = np.array([r[2] for r in rows])
    mult = np.array([float(r[3]) for r in rows])
    mult_txt = np.array([str(r[3]) for r in rows], dtype=object)
    tou = np.array([bool(r[4]) for r in rows])
    two_part = np.array([bool(r[5]) for r in rows])
    codes = [r[6] for r in rows]
    meter_id = np.array([meters.get(r[0], 0) for r in rows], dtype=np.int64)

    # --- books ----------------------------------------------------------------------------------
    station0 = ctx.stations[0].org.pk if ctx.stations else None
    reader = ctx.users.get("reader")
    book_codes = sorted(set(codes))
    book_org = {}
    for c, o in zip(codes, org.tolist(), strict=True):
        book_org.setdefault(c, o)
    books = []
    for i, code in enumerate(book_codes):
        hv = "-H" in code
        method = "automated" if hv else ("mixed" if i % 3 == 0 else "manual")
        books.append(
            ReadingBook(
                code=code,
                name=f"{'高压' if hv else '低压'}抄表段 {code.rsplit('-', 1)[-1]}",
                org_id=book_org[code],
                reading_day=5 + (i * 7) % 21,
                reader=reader if reader is not None and book_org[code] == station0 and not hv else None,
                method=method,
            )
        )
    now = datetime.combine(ctx.today, datetime.min.time(), tzinfo=UTC)
    with transaction.atomic():
        ReadingBook.objects.bulk_create(books, batch_size=2000)
        book_by_code = {b.code: b for b in ReadingBook.objects.all()}
        book_id = np.array([book_by_code[c].pk for c in codes], dtype=np.int64)
        rday = np.array([book_by_code[c].reading_day for c in codes], dtype=np.int64)
        bmethod = np.array([book_by_code[c].method for c in codes])
        seq = np.zeros(n, dtype=np.int64)
        counters: dict[int, int] = defaultdict(int)
        for i, b in enumerate(book_id.tolist()):
            counters[b] += 10
            seq[i] = counters[b]
        loader = Loader(pipelined=True)
        mid0 = loader.reserve_ids(BookMembership, n)
        first_month = _month_add(ctx.today.replace(day=1), -MONTHS)  # 2025-10 for a 2026-11-01 demo
        last_month = _month_add(first_month, MONTHS - 1)
        plans = [
            ReadingPlan(
                book=b,
                org_id=b.org_id,
                month=_month_add(first_month, k),
                planned_date=_month_add(first_month, k).replace(day=b.reading_day),
                reader_id=b.reader_id,
                point_count=counters[b.pk],
                status="in_progress" if k == MONTHS - 1 else "done",
                created_at=now,
            )
            for b in book_by_code.values()
            for k in range(MONTHS)
        ]
        ReadingPlan.objects.bulk_create(plans, batch_size=5000)
        loader.submit(
            Loader.rows(
                loader,
                BookMembership,
                {
                    "id": [str(x) for x in range(mid0, mid0 + n)],
                    "book_id": [str(x) for x in book_id.tolist()],
                    "metering_point_id": [str(x) for x in pid.tolist()],
                    "sequence": [str(x) for x in seq.tolist()],
                    "assigned_on": first_month.isoformat(),
                },
                n,
            )
        )

        # --- a year of monthly readings -------------------------------------------------------
        mean = np.array([MEAN_KWH.get(c, 500.0) for c in cat]) * rng.lognormal(0, 0.45, n)
        months = [_month_add(first_month, k) for k in range(MONTHS)]
        season = np.array([SEASON[m.month] for m in months])
        kwh = mean[:, None] * season[None, :] * rng.uniform(0.9, 1.1, (n, MONTHS))
        kwh[:, 0] = 0.0  # the opening reading
        delta = np.rint(kwh / mult[:, None] * 100).astype(np.int64)  # register hundredths
        span = delta.sum(axis=1)
        start = (rng.random(n) * np.maximum(WRAP - span - 1, 1)).astype(np.int64)
        total = (start[:, None] + np.cumsum(delta, axis=1)) % WRAP
        shares = SHARES[None, :] * rng.uniform(0.85, 1.15, (n, 4))
        shares /= shares.sum(axis=1, keepdims=True)
        rate_delta = np.rint(delta[:, :, None] * shares[:, None, :]).astype(np.int64)
        rate_delta[:, :, 3] = delta - rate_delta[:, :, :3].sum(axis=2)  # valley takes the remainder
        rate_start = np.rint(start[:, None] * shares).astype(np.int64)
        rate_start[:, 3] = start - rate_start[:, :3].sum(axis=1)
        rates = (rate_start[:, None, :] + np.cumsum(rate_delta, axis=1)) % WRAP
        pf_ratio = rng.uniform(0.3, 0.55, n)
        reactive = (
            np.rint(start * 0.4).astype(np.int64)[:, None]
            + np.cumsum(np.rint(delta * pf_ratio[:, None]), axis=1).astype(np.int64)
        ) % WRAP
        demand = np.rint(kwh / (720 * rng.uniform(0.35, 0.6, (n, 1))) / mult[:, None] * 10000).astype(
            np.int64
        )
        # who is read how: AMI for automated books and half the points of mixed books
        ami = (bmethod == "automated") | ((bmethod == "mixed") & (pid % 2 == 0))
        file_src = (~ami) & (pid % 10 == 3)
        u = rng.random((n, MONTHS))
        estimated = (~ami[:, None]) & (u < 0.015)
        estimated[:, 0] = False
        estimated[:, -1] = False
        last_u = rng.random(n)
        exception = last_u < 0.015
        missing = (last_u >= 0.015) & (last_u < 0.02) & ~ami
        exc_rule = np.array(EXC_RULES)[rng.integers(0, len(EXC_RULES), n)]
        exc_rule = np.where((exc_rule == "tou_imbalance") & ~tou, "jump", exc_rule)
        # the exceptions' last readings: a jump, a zero, a drop, an imbalance or a fault flag
        last = MONTHS - 1
        prev_total = total[:, last - 1]
        jump_t = (prev_total + delta[:, last] * 4) % WRAP
        drop_t = (prev_total + delta[:, last] // 5) % WRAP
        total[:, last] = np.where(exception & (exc_rule == "jump"), jump_t, total[:, last])
        total[:, last] = np.where(exception & (exc_rule == "drop"), drop_t, total[:, last])
        total[:, last] = np.where(exception & (exc_rule == "zero_use"), prev_total, total[:, last])
        rates[:, last, 1] = np.where(
            exception & (exc_rule == "tou_imbalance"), rates[:, last, 1] + 5000, rates[:, last, 1]
        )
        ids_first = loader.reserve_ids(MeterReading, n * MONTHS)
        null = loader.null
        at = now.isoformat()
        exc_rows: list[ReadingException] = []
        written = 0
        for k in range(MONTHS):
            m = months[k]
            keep = ~(missing & (k == last))
            idx = np.nonzero(keep)[0]
            cnt = len(idx)
            rd = [m.replace(day=int(d)).isoformat() for d in rday[idx].tolist()]
            status = np.full(cnt, "valid", dtype=object)
            source = np.where(ami[idx], "ami", np.where(file_src[idx], "file", "manual")).astype(object)
            est = estimated[idx, k]
            status[est] = "estimated"
            source[est] = "estimate"
            if k == last:
                status[exception[idx]] = "exception"
            flags = np.where(
                (k == last) & exception[idx] & (exc_rule[idx] == "meter_fault"), '["voltage_loss"]', "[]"
            )
            ids = ids_first + idx * MONTHS + k
            t_ = tou[idx]
            two = two_part[idx]

            def opt(values, mask):
                txt = _c(values)
                return [v if f else null for v, f in zip(txt, mask.tolist(), strict=True)]

            dem = demand[idx, k]
            dem_txt = [
                f"{q}.{r:04d}" if f else null
                for q, r, f in zip((dem // 10000).tolist(), (dem % 10000).tolist(), two.tolist(), strict=True)
            ]
            for i0 in range(0, cnt, CHUNK):
                sl = slice(i0, min(cnt, i0 + CHUNK))
                j = idx[sl]
                loader.submit(
                    Loader.rows(
                        loader,
                        MeterReading,
                        {
                            "id": [str(x) for x in ids[sl].tolist()],
                            "org_id": [str(x) for x in org[j].tolist()],
                            "metering_point_id": [str(x) for x in pid[j].tolist()],
                            "meter_id": [str(x) if x else null for x in meter_id[j].tolist()],
                            "reading_date": rd[sl],
                            "total": _c(total[j, k]),
                            "sharp": opt(rates[j, k, 0], t_[sl]),
                            "peak": opt(rates[j, k, 1], t_[sl]),
                            "flat": opt(rates[j, k, 2], t_[sl]),
                            "valley": opt(rates[j, k, 3], t_[sl]),
                            "reactive": opt(reactive[j, k], two[sl]),
                            "max_demand": dem_txt[sl] if k else [null] * len(j),
                            "multiplier": mult_txt[j].tolist(),
                            "source": source[sl].tolist(),
                            "status": status[sl].tolist(),
                            "fault_flags": flags[sl].tolist(),
                            "note": [("估抄" if s == "estimate" else "") for s in source[sl].tolist()],
                            "entered_at": at,
                            "entered_by_id": null,
                            "plan_id": null,
                            "photo": "",
                        },
                        len(j),
                    )
                )
                written += len(j)
        loader.finish()
        loader.fix_sequences([MeterReading])
        # the queue: open exceptions of the last month, and points not read by the cut-off
        details = {
            "jump": "电量突增: 本月用电为历史日均的 4 倍左右 (阈值 2)",
            "drop": "电量突减: 本月用电不足历史日均的 1/2",
            "zero_use": "零电量",
            "meter_fault": "表计事件/现场情况: 失压",
            "tou_imbalance": "示值不平: 总 ≠ 分时之和",
        }
        for i in np.nonzero(exception)[0].tolist():
            d = months[last].replace(day=int(rday[i]))
            exc_rows.append(
                ReadingException(
                    org_id=int(org[i]),
                    metering_point_id=int(pid[i]),
                    reading_id=int(ids_first + i * MONTHS + last),
                    reading_date=d,
                    rule=str(exc_rule[i]),
                    detail=details[str(exc_rule[i])],
                    created_at=now,
                )
            )
        for i in np.nonzero(missing)[0].tolist():
            d = months[last].replace(day=int(rday[i]))
            exc_rows.append(
                ReadingException(
                    org_id=int(org[i]),
                    metering_point_id=int(pid[i]),
                    reading_date=d,
                    rule="missing",
                    detail=f"抄表段 {codes[i]} {d:%Y-%m} 截止未抄",
                    created_at=now,
                )
            )
        _owners_and_deadlines(exc_rows, rng)
        ReadingException.objects.bulk_create(exc_rows, batch_size=5000)
        _processes(ctx)

        # --- AMI: terminals and 45 days of daily frozen readings -----------------------------------
        ami_idx = np.nonzero(ami & (meter_id > 0))[0]
        terminals, links = [], []
        by_book: dict[int, list[int]] = defaultdict(list)
        for i in ami_idx.tolist():
            by_book[int(book_id[i])].append(i)
        book_of = {b.pk: b for b in book_by_code.values()}
        for b, members in by_book.items():
            bk = book_of[b]
            if bk.method == "automated":  # one dedicated terminal per high-voltage customer
                for i in members:
                    kind = "large_customer" if cat[i] == "large_industry" else "dedicated_transformer"
                    terminals.append(
                        Terminal(
                            code=f"TD{int(pid[i]):08d}",
                            name=f"专变终端 {bk.code}",
                            org_id=bk.org_id,
                            kind=kind,
                            concentrator=False,
                            last_seen_at=now,
                        )
                    )
                    links.append((terminals[-1].code, int(meter_id[i])))
            else:  # concentrators of 100 low-voltage meters
                for g in range(0, len(members), 100):
                    code = f"TC{bk.pk:05d}{g // 100:03d}"
                    terminals.append(
                        Terminal(
                            code=code,
                            name=f"公变集中器 {bk.code}",
                            org_id=bk.org_id,
                            kind="public_transformer",
                            concentrator=True,
                            last_seen_at=now,
                        )
                    )
                    links.extend((code, int(meter_id[i])) for i in members[g : g + 100])
        Terminal.objects.bulk_create(terminals, batch_size=5000)
        tid = dict(Terminal.objects.values_list("code", "pk"))
        TerminalMeter.objects.bulk_create(
            [TerminalMeter(terminal_id=tid[c], meter_id=m) for c, m in links], batch_size=5000
        )
        last_day = ctx.today - timedelta(days=1)
        days = [last_day - timedelta(days=FROZEN_DAYS - 1 - d) for d in range(FROZEN_DAYS)]
        epoch = date(1970, 1, 1)
        day_num = np.array([(d - epoch).days for d in days], dtype=np.float64)
        frozen = 0
        for i0 in range(0, len(ami_idx), 5000):
            sel = ami_idx[i0 : i0 + 5000]
            cols: dict[str, list] = {
                c: []
                for c in (
                    "meter_id",
                    "metering_point_id",
                    "day",
                    "total",
                    "sharp",
                    "peak",
                    "flat",
                    "valley",
                    "reactive",
                )
            }
            for i in sel.tolist():
                xs = np.array([(m.replace(day=int(rday[i])) - epoch).days for m in months], dtype=np.float64)
                unwrapped = start[i] + np.cumsum(delta[i])
                slope = delta[i, last] / max(xs[last] - xs[last - 1], 1)
                tot = np.interp(day_num, xs, unwrapped)
                tot = np.where(day_num > xs[last], unwrapped[last] + (day_num - xs[last]) * slope, tot)
                tot = np.rint(tot).astype(np.int64)
                rr = [
                    np.rint(
                        np.interp(day_num, xs, rate_start[i, r] + np.cumsum(rate_delta[i, :, r]))
                        + np.maximum(day_num - xs[last], 0) * slope * shares[i, r]
                    ).astype(np.int64)
                    for r in range(3)
                ]
                val = tot - rr[0] - rr[1] - rr[2]
                react = np.rint(tot * pf_ratio[i] * 0.9).astype(np.int64)
                cols["meter_id"] += [str(int(meter_id[i]))] * FROZEN_DAYS
                cols["metering_point_id"] += [str(int(pid[i]))] * FROZEN_DAYS
                cols["day"] += [d.isoformat() for d in days]
                cols["total"] += _c(tot % WRAP)
                for name, arr in zip(("sharp", "peak", "flat", "valley"), (*rr, val), strict=True):
                    cols[name] += _c(arr % WRAP) if tou[i] else [null] * FROZEN_DAYS
                cols["reactive"] += _c(react % WRAP) if two_part[i] else [null] * FROZEN_DAYS
            cnt = len(cols["day"])
            f0 = loader.reserve_ids(DailyFrozenReading, cnt)
            cols["id"] = [str(x) for x in range(f0, f0 + cnt)]
            loader.submit(
                Loader.rows(loader, DailyFrozenReading, {**cols, "flags": "", "received_at": at}, cnt)
            )
            frozen += cnt
        loader.finish()
        loader.fix_sequences([BookMembership, DailyFrozenReading])
    report.rows.update(
        {
            "readings_exceptions_overdue": sum(
                1 for e in exc_rows if e.due_on is not None and e.due_on < timezone.localdate()
            ),
            "readings_books": len(books),
            "readings_monthly": written,
            "readings_exceptions_open": len(exc_rows),
            "readings_terminals": len(terminals),
            "readings_daily_frozen": frozen,
        }
    )
    report.table_seconds.update(loader.seconds)
    ctx.data["readings"] = {"first_month": first_month, "last_month": last_month}


def _owners_and_deadlines(exc_rows: list, rng: np.random.Generator) -> None:
    """The open exceptions as an auditor finds them when the demo is opened: flagged over the last
    two weeks (real time, like the work orders), each with its owner (the demo auditor for the
    books of the first county, the nearest billing auditor elsewhere) and its deadline in working
    days, so that some are overdue and some are due in the next days."""
    from django.utils import timezone

    from mmis.readings.services import assign_owners

    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    ages = rng.choice([0, 1, 2, 3, 6, 9, 13], size=len(exc_rows))
    groups: dict[int, list] = defaultdict(list)
    for e, age in zip(exc_rows, ages.tolist(), strict=True):
        e.created_at = now - timedelta(days=int(age), hours=int(rng.integers(0, 9)))
        groups[int(age)].append(e)
    for items in groups.values():  # the deadline counts from the day each was flagged
        assign_owners(items, at=items[0].created_at)


def _processes(ctx: DemoContext) -> None:
    """The work orders the reading audit opens: site check (inspection) and the metering work
    order (换表 / CT-PT), published for the province."""
    from mmis.inspection import services as inspection
    from mmis.readings import workorders

    admin = ctx.users.get("admin")
    at = datetime.combine(ctx.today - timedelta(days=60), datetime.min.time(), tzinfo=UTC)
    for install in (inspection.install_definitions, workorders.install_definitions):
        install(actor=admin, province=ctx.province, at=at, effective_from=date(2020, 1, 1))
