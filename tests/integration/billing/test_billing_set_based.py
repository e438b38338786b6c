"""The set-based partition path (`mmis.billing.bulk`: one input query, NumPy energy, vectorised
rating and audit, rows as COPY text) writes exactly the rows of the per-point path (`calc`), bill
by bill: amounts, lines, flags and their messages, risk, the stored trace, exceptions and counters.

Each month is run twice, once with every point through the per-point path and once set-based, on
real readings written straight into the readings table (so the unusual cases can be made: held and
estimated readings, register rollover with and without a meter, meter changed, too many decimals,
sub-meters, energising inside the month, an issued bill) and on the fake input source of the other
billing tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from billing_support import snapshot

from mmis.billing import bulk, services
from mmis.billing.models import Bill, BillingRun
from mmis.common.periods import Period

AT = datetime(2026, 4, 2, 9, 0, tzinfo=UTC)
MONTHS = [Period.month(2025, 3), Period.month(2026, 2), Period.month(2026, 3)]
DAYS = [date(2025, 2, 25), date(2025, 3, 25), date(2026, 1, 25), date(2026, 2, 25), date(2026, 3, 25)]


def _point(customer, n: int, *, code: str, category: str = "residential", digits: int | None = 6, **extra):
    from mmis.assets import services as assets
    from mmis.customers import services as cs
    from mmis.customers.models import MeteringPoint

    mult = extra.pop("multiplier", None)
    data = {
        "usage_category": category,
        "voltage_level": "220V" if category == "residential" else "10kV",
        "tariff_code": code,
        "reading_book_code": f"SB{n % 3}",
        "contract_capacity_kva": "8" if category == "residential" else "400",
        **extra,
    }
    point = cs.add_metering_point(actor=None, customer=customer, data=data)
    meter = None
    if digits is not None:
        meter = assets.register_meter(
            actor=None,
            org=customer.org,
            asset_no=f"SB{n:06d}",
            kind="single_phase" if category == "residential" else "three_phase_4w",
            register_digits=digits,
            tou=bool(extra.get("tou")),
            comm_address=f"9{n:011d}",
        )
        assets.install(actor=None, point=point, meter=meter, transformers=[], on=date(2024, 1, 1))
    if mult is not None:
        MeteringPoint.objects.filter(pk=point.pk).update(multiplier=Decimal(mult))
    point.refresh_from_db()
    return point, meter


def _read(point, meter, day: date, total: str, *, status="valid", source="manual", **regs):
    from mmis.readings.models import MeterReading

    return MeterReading.objects.create(
        org_id=point.org_id,
        metering_point=point,
        meter=meter,
        reading_date=day,
        total=Decimal(total),
        status=status,
        source=source,
        entered_at=AT,
        **{k: Decimal(v) for k, v in regs.items()},
    )


def _series(point, meter, totals: list[str], **kw):
    for day, total in zip(DAYS, totals, strict=True):
        if total is not None:
            _read(point, meter, day, total, **kw)


@pytest.fixture
def world(utility, monkeypatch):
    from mmis.cli.demo.step_tariffs import demo_catalog
    from mmis.customers.models import MeteringPoint
    from mmis.tariffs import services as ts

    monkeypatch.setattr(services, "PARTITION_TARGET_POINTS", 1)  # one book per partition
    ts.import_catalog(actor=utility.users["admin"], payload=demo_catalog(utility.province.code), at=AT)
    a, b = utility.customers["a"], utility.customers["b"]
    p = {}
    # the usual ones
    for n, (name, code, totals) in enumerate(
        [
            ("res", "RES-TIER", ["100", "300", "1000", "1300", "1750"]),
            ("res_jump", "RES-TIER", ["100", "200", "1000", "1100", "1900"]),  # +700 %: change flags
            ("res_zero", "RES-TIER", ["5", "5", "5", "5", "5"]),
            ("res_year", "RES-TIER-Y", ["0", "2000", "5000", "8000", "9100.5"]),  # annual bands, ytd
            ("agr", "AGR", ["0", "100", "200", "300", "400.25"]),
        ],
        start=1,
    ):
        p[name], m = _point(a, n, code=code, category="agricultural" if code == "AGR" else "residential")
        _series(p[name], m, totals, reactive="0") if name == "agr" else _series(p[name], m, totals)
    p["gci"], m = _point(b, 10, code="GCI-FLAT", category="general_ci", multiplier="30")
    _series(p["gci"], m, ["1000.25", "1100.5", "2000", "2133.33", "2266.67"])
    # TOU with reactive (power factor), the registers one unit off the total (accepted, DOMAIN §2.1)
    p["tou"], m = _point(b, 11, code="GCI-TOU", category="general_ci", tou=True, pf_standard="0.85")
    for day, t, s_, pk, f, v, q in [
        (DAYS[0], "100", "10", "30", "35", "25", "50"),
        (DAYS[1], "4100", "410", "1230", "1435", "1025", "1650"),
        (DAYS[2], "8000", "800", "2400", "2800", "2000", "3000"),
        (DAYS[3], "12000", "1200", "3600", "4200", "3000", "4700"),
        (DAYS[4], "16000", "1600", "4800", "5600.01", "4000", "6300"),
    ]:
        _read(p["tou"], m, day, t, sharp=s_, peak=pk, flat=f, valley=v, reactive=q)
    # TOU registers on a flat tariff: the total bills, the registers stay in the trace
    p["tou_flat"], m = _point(b, 12, code="GCI-FLAT", category="general_ci", tou=True)
    for day, t in zip(DAYS, ["0", "100", "200", "300", "400"], strict=True):
        x = Decimal(t) / 4
        _read(p["tou_flat"], m, day, t, sharp=str(x), peak=str(x), flat=str(x), valley=str(x))
    # large industry: demand read, capacity and demand charges, PF 0.90
    for n, (name, mode) in enumerate(
        [("li_dc", "demand_contract"), ("li_cap", "capacity"), ("li_da", "demand_actual")]
    ):
        p[name], m = _point(
            b,
            20 + n,
            code="LI-2P",
            category="large_industry",
            tou=True,
            multiplier="40",
            basic_charge_mode=mode,
            contract_demand_kw="300",
            pf_standard="0.90",
        )
        for k, day in enumerate(DAYS):
            t = Decimal(5000 * k)
            _read(
                p[name],
                m,
                day,
                str(t),
                sharp=str(t / 10),
                peak=str(t * 3 / 10),
                flat=str(t * 3 / 10),
                valley=str(t * 3 / 10),
                reactive=str(t / 2 + k),
                max_demand=str(Decimal("7.5") + k + n),
            )
    # register rollover: a 4-digit meter wraps; without a meter it cannot be billed
    p["roll"], m = _point(a, 30, code="RES-TIER", digits=4)
    _series(p["roll"], m, ["100", "200", "9500", "9800", "150"])
    p["roll_nometer"], _ = _point(a, 31, code="RES-TIER", digits=None)
    _series(p["roll_nometer"], None, ["100", "200", "9500", "9800", "150"])
    # estimated, held, pending, missing, first reading
    p["est"], m = _point(a, 32, code="RES-TIER")
    _series(p["est"], m, ["0", "100", "200", "300", None])
    _read(p["est"], m, DAYS[4], "420", status="estimated", source="estimate")
    p["held"], m = _point(a, 33, code="RES-TIER")
    _series(p["held"], m, ["0", "100", "200", "300", None])
    _read(p["held"], m, DAYS[4], "99999", status="exception")
    p["missing"], m = _point(a, 34, code="RES-TIER")
    _series(p["missing"], m, ["0", "100", "200", "300", None])
    p["first"], m = _point(a, 35, code="RES-TIER")
    _read(p["first"], m, DAYS[4], "50")
    # the meter changed between the two readings
    p["swap"], m = _point(a, 36, code="RES-TIER")
    _series(p["swap"], m, ["0", "100", "200", "300", None])
    from mmis.assets import services as assets

    m2 = assets.register_meter(
        actor=None, org=a.org, asset_no="SB000099", kind="single_phase", comm_address="999999999999"
    )
    _read(p["swap"], m2, DAYS[4], "20")
    # energy with more than 4 decimals (registers × a 4-decimal multiplier)
    p["decimals"], m = _point(b, 37, code="GCI-FLAT", category="general_ci", multiplier="0.3333")
    _series(p["decimals"], m, ["0", "1", "2", "3", "4.0001"])
    # no tariff code, an unknown tariff, energised inside the month
    p["nocode"], m = _point(a, 38, code="")
    _series(p["nocode"], m, ["0", "1", "2", "3", "4"])
    p["unknown"], m = _point(a, 39, code="NO-SUCH")
    _series(p["unknown"], m, ["0", "1", "2", "3", "4"])
    p["energised"], m = _point(
        b, 40, code="LI-2P", category="large_industry", tou=True, basic_charge_mode="capacity"
    )
    MeteringPoint.objects.filter(pk=p["energised"].pk).update(energised_on=date(2026, 3, 10))
    for k, day in enumerate(DAYS):
        t = Decimal(800 * k)
        _read(
            p["energised"],
            m,
            day,
            str(t),
            sharp=str(t / 4),
            peak=str(t / 4),
            flat=str(t / 4),
            valley=str(t / 4),
        )
    # a main meter with a sub-meter
    p["main"], m = _point(b, 41, code="GCI-FLAT", category="general_ci")
    _series(p["main"], m, ["0", "1000", "2000", "3000", "4000"])
    p["sub"], m = _point(b, 42, code="GCI-FLAT", category="general_ci")
    MeteringPoint.objects.filter(pk=p["sub"].pk).update(role="sub", parent=p["main"])
    _series(p["sub"], m, ["0", "100", "200", "300", "450"])
    # the multiplier recorded on the readings changed (CT swap): billable, audited as a change
    p["mult_change"], m = _point(b, 43, code="GCI-FLAT", category="general_ci", multiplier="40")
    for day, t, k in zip(DAYS, ["0", "10", "20", "30", "45"], ["30", "30", "30", "30", "40"], strict=True):
        _read(p["mult_change"], m, day, t, multiplier=k)
    # a recorded metering change inside March: readings splits the period (per-point path)
    from mmis.readings.models import MeterChange

    p["changed"], m = _point(b, 44, code="GCI-FLAT", category="general_ci", multiplier="20")
    _series(p["changed"], m, ["0", "10", "20", "30", "45"])
    MeterChange.objects.create(
        org_id=p["changed"].org_id,
        metering_point=p["changed"],
        changed_on=date(2026, 3, 10),
        old_meter=m,
        new_meter=m,
        old_multiplier=Decimal(20),
        new_multiplier=Decimal(30),
        old_final={"total": "35"},
        new_initial={"total": "35"},
        recorded_at=AT,
    )
    return {"utility": utility, "points": p}


FAST: list[int] = []  # points billed set-based by the last run
REAL_RATE_AND_AUDIT = bulk.rate_and_audit


def _run(world, month: Period, *, set_based: bool, monkeypatch) -> BillingRun:
    from mmis.billing import bulk

    real = REAL_RATE_AND_AUDIT

    def spy(cols, *args, **kw):
        block = real(cols, *args, **kw)
        FAST.extend(cols.ids()[block.idx].tolist())
        return block

    FAST.clear()
    monkeypatch.setattr(bulk, "rate_and_audit", spy)
    monkeypatch.setattr(services, "SET_BASED", set_based)
    run = services.plan_run(org=world["utility"].province, month=month, actor=None, at=AT)
    run = services.run_in_process(run)
    assert run.partitions_failed == 0, list(run.partitions.values_list("error", flat=True))
    return run


def test_set_based_rows_equal_the_per_point_rows_on_real_readings(world, monkeypatch):
    from mmis.billing import calc

    pts = world["points"]
    built: dict[int, dict] = {}  # point → the trace the per-point path built, before compacting
    real_build = calc.build_trace

    def keep(b):
        built[b.point.id] = real_build(b)
        return built[b.point.id]

    monkeypatch.setattr(calc, "build_trace", keep)
    for month in MONTHS:
        if month == MONTHS[-1]:  # one bill of the month already issued: both paths skip it
            _run(world, month, set_based=True, monkeypatch=monkeypatch)
            Bill.objects.filter(point=pts["res_zero"], period_start=month.start).update(state="issued")
        built.clear()
        slow = snapshot(_run(world, month, set_based=False, monkeypatch=monkeypatch))
        assert {pid: b["full_trace"] for pid, b in slow["bills"].items()} == built  # stored compactly
        fast = snapshot(_run(world, month, set_based=True, monkeypatch=monkeypatch))
        assert fast["bills"].keys() == slow["bills"].keys()
        for pid in slow["bills"]:
            assert fast["bills"][pid] == slow["bills"][pid], pid
        assert fast == slow
    # what the month covers: the usual points set-based, the others set aside or per point
    march = fast
    reasons = {pid: reason for pid, (reason, _) in march["exceptions"].items()}
    assert reasons == {
        pts["roll_nometer"].pk: "invalid_energy",
        pts["held"].pk: "exception",
        pts["missing"].pk: "missing",
        pts["first"].pk: "no_start_reading",
        pts["swap"].pk: "meter_changed",
        pts["decimals"].pk: "bad_input",
        pts["nocode"].pk: "no_tariff_code",
        pts["unknown"].pk: "no_tariff",
    }
    billed = set(march["bills"])
    usual = (
        "res",
        "res_jump",
        "res_year",
        "agr",
        "gci",
        "tou",
        "tou_flat",
        "li_dc",
        "li_cap",
        "li_da",
        "roll",
        "est",
        "sub",
        "mult_change",
    )
    names = {v.pk: k for k, v in pts.items()}
    assert sorted(names[i] for i in FAST) == sorted(usual)  # the others went point by point
    assert {pts[n].pk for n in ("res", "tou", "li_dc", "roll", "est", "energised", "main", "sub")} <= billed
    assert pts["res_zero"].pk not in billed and march["run"]["skipped_issued"] == 1
    flags = {pid: b["flags"] for pid, b in march["bills"].items()}
    assert (
        "change_last_month" in flags[pts["res_jump"].pk] and "change_last_year" in flags[pts["res_jump"].pk]
    )
    assert "estimated" in flags[pts["est"].pk]
    assert "tariff_change" in flags[pts["mult_change"].pk] and "tariff_change" in flags[pts["changed"].pk]
    assert march["bills"][pts["mult_change"].pk]["energy_kwh"] == Decimal("600.0000")  # 15 × 40
    assert march["bills"][pts["changed"].pk]["energy_kwh"] == Decimal("400.0000")  # 5 × 20 + 10 × 30
    assert march["bills"][pts["res_year"].pk]["trace"]["ytd"] == "3000.0000"  # Feb's bill in the tier year
    assert march["bills"][pts["tou"].pk]["trace"]["pfv"]
    assert "seg" not in march["bills"][pts["res"].pk]["trace"]  # one segment: derived, not stored
    assert march["bills"][pts["roll"].pk]["energy_kwh"] == Decimal("350.0000")  # 150 + 10,000 − 9,800


def test_set_based_rows_equal_the_per_point_rows_on_another_input_source(monkeypatch, utility):
    """The fake source of the billing run tests (its readings arrive as PointReadings)."""
    from billing_support import LI_USAGE, FakeSource, add_point, new_customer, reading, version

    from mmis.billing import inputs

    monkeypatch.setattr(services, "PARTITION_TARGET_POINTS", 1)
    fake = FakeSource()
    fake.versions.append(version(9, "GEN", {"energy": {"type": "flat", "price": "0.70"}}, date(2026, 3, 16)))
    st = utility.stations[0]
    pts = []
    for i, (code, kwh, kw) in enumerate(
        [
            ("RES", "450", {}),
            ("RES", "0", {}),
            ("RES", "250", {"estimated": True}),
            ("RES", "10", {"multiplier": Decimal(0)}),
            ("RES", "12.5", {"multiplier_changed": True}),
            ("GEN", "12345.6789", {"multiplier": Decimal(40)}),  # prorated: a version from the 16th
            ("NOPE", "10", {}),
        ]
    ):
        pt = add_point(new_customer(st, 500 + i), tariff_code=code, book="F1", category="residential")
        fake.readings[pt.pk] = reading(pt.pk, kwh, **kw)
        pts.append(pt)
    li = add_point(
        new_customer(st, 600),
        tariff_code="LI",
        book="F2",
        category="large_industry",
        basic_charge_mode="demand_contract",
        contract_demand_kw="1000",
        pf_standard="0.90",
        tou=True,
    )
    fake.readings[li.pk] = LI_USAGE(li.pk)
    add_point(new_customer(st, 601), tariff_code="RES", book="F2")  # no reading
    from mmis.customers.models import MeteringPoint

    energised = []
    for n, code in ((602, "RES"), (603, "GEN")):  # energised on the 10th: before / across a version
        pt = add_point(new_customer(st, n), tariff_code=code, book="F2")
        energised.append(pt.pk)
        MeteringPoint.objects.filter(pk=pt.pk).update(energised_on=date(2026, 3, 10))
        fake.readings[pt.pk] = reading(pt.pk, "300")
    with inputs.use(fake):
        month = Period.month(2026, 3)
        slow = snapshot(_run({"utility": utility}, month, set_based=False, monkeypatch=monkeypatch))
        fast = snapshot(_run({"utility": utility}, month, set_based=True, monkeypatch=monkeypatch))
    assert fast == slow
    assert len(fast["bills"]) == 8 and len(fast["exceptions"]) == 3
    res, gen = (fast["bills"][pk] for pk in energised)
    assert res["period"][0] == date(2026, 3, 10) and not res["prorated"]
    assert gen["prorated"] and [s["start"] for s in gen["full_trace"]["seg"]] == ["2026-03-10", "2026-03-16"]
    assert sorted(FAST) == sorted([pts[0].pk, pts[1].pk, pts[2].pk, pts[4].pk, li.pk])


@pytest.mark.django_db(transaction=True)
def test_the_pipelined_in_process_run_writes_what_the_sequential_one_writes(monkeypatch, utility):
    """PostgreSQL: a thread calculates the next partition while the run writes the previous one."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the pipeline runs on PostgreSQL (SQLite runs partitions one after the other)")
    from billing_support import FakeSource, add_point, new_customer, reading

    from mmis.billing import inputs
    from mmis.billing.models import RunPartition

    monkeypatch.setattr(services, "PARTITION_TARGET_POINTS", 1)
    fake = FakeSource()
    st = utility.stations[0]
    for i in range(12):
        pt = add_point(new_customer(st, 700 + i), tariff_code="RES" if i % 3 else "GEN", book=f"P{i % 5}")
        fake.readings[pt.pk] = reading(pt.pk, str(100 + 37 * i))
    month = Period.month(2026, 3)
    seen = []
    with inputs.use(fake):
        monkeypatch.setattr(services, "PIPELINE", False)
        sequential = snapshot(_run({"utility": utility}, month, set_based=True, monkeypatch=monkeypatch))
        monkeypatch.setattr(services, "PIPELINE", True)
        run = services.plan_run(org=utility.province, month=month, actor=None, at=AT)
        # a partition that cannot be calculated fails alone; the others are written
        broken = run.partitions.order_by("key")[1]
        real = services._calculate

        threads = set()

        def calculate(p):
            import threading

            threads.add(threading.current_thread().name)
            if p.pk == broken.pk:
                raise RuntimeError("no inputs")
            return real(p)

        monkeypatch.setattr(services, "_calculate", calculate)
        run = services.run_in_process(run, progress=lambda p: seen.append(p.key))
        assert run.partitions_failed == 1 and "no inputs" in run.partitions.get(pk=broken.pk).error
        assert len(seen) == run.partitions_total == 5
        assert threads == {"billing-calculate"}  # calculated beside the writing thread
        monkeypatch.setattr(services, "_calculate", real)
        run = services.run_in_process(run)  # resumes the failed one
        pipelined = snapshot(run)
    assert run.state == BillingRun.State.CALCULATED
    assert pipelined == sequential
    assert set(RunPartition.objects.filter(run=run).values_list("state", flat=True)) == {"done"}
